"""Ids, labels, sources and store paths that try to lead out of their root."""

from __future__ import annotations

import csv
import shutil

import pytest

from vidnet.data.dataset import VideoClipDataset
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.errors import VidnetError
from vidnet.testing import write_test_video

from .conftest import invoke, one_line_error


def _index_src(tmp_path, ids: list[str], label: str = "walk"):
    """SRC with one tiny video and an index listing it under ``ids`` plus a good id ``ok``."""
    src = tmp_path / "work" / "src"
    write_test_video(src / "clips" / "a.mp4", 3, height=32, width=32)
    lines = ["label,id,split,source"] + [f"{label},{i},train,clips/a.mp4" for i in [*ids, "ok"]]
    (src / "index.csv").write_text("\n".join(lines) + "\n")
    return src


def _stores(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("frames.db"))


def _errors(dst):
    with open(dst / "convert-errors.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["severity"] == "error"]


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [
        ("../../../x/escaped_id", "path separator"),
        ("..", "starts with a dot"),
        ('""', "empty id"),
        ("sub/dir", "path separator"),
        ("/abs/x", "path separator"),
    ],
    ids=["dotdot-escape", "dotdot", "empty", "nested", "absolute"],
)
def test_bad_id_is_an_error_row_and_writes_nothing_outside(tmp_path, bad_id, reason):
    src = _index_src(tmp_path, [bad_id])
    dst = tmp_path / "work" / "dst"
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert s.converted == 1  # the batch goes on
    assert _stores(tmp_path) == ["work/dst/walk/ok/frames.db"]  # nothing at the root, in a label folder, nested
    assert not (tmp_path / "x").exists() and not (tmp_path / "work" / "x").exists()
    (err,) = _errors(dst)
    assert reason in err["reason"] and err["path"].endswith("index.csv:2")


def test_bad_label_is_an_error_row(tmp_path):
    src = _index_src(tmp_path, [], label="../up")
    (src / "index.csv").write_text((src / "index.csv").read_text() + "fine,v2,train,clips/a.mp4\n")
    dst = tmp_path / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    assert _stores(dst) == ["fine/v2/frames.db"]
    assert "label '../up' contains a path separator" in _errors(dst)[0]["reason"]


def test_id_pointing_into_another_dataset_does_not_replace_its_store(tmp_path):
    other_src, other = tmp_path / "other_src", tmp_path / "work" / "other_ds"
    write_test_video(other_src / "label" / "video.mp4", 5, height=32, width=32, seed=3)
    convert_dataset(other_src, other, ConvertOptions(workers=1))
    before = (other / "label" / "video" / "frames.db").read_bytes()
    src = _index_src(tmp_path, ["../../other_ds/label/video"])  # from work/dst/walk/: work/other_ds/...
    convert_dataset(src, tmp_path / "work" / "dst", ConvertOptions(workers=1))  # no --overwrite needed to try
    assert (other / "label" / "video" / "frames.db").read_bytes() == before
    assert _stores(tmp_path / "work" / "dst") == ["walk/ok/frames.db"]


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_source_outside_src_needs_an_explicit_option(tmp_path, where):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_test_video(tmp_path / "outside.mp4", 3, height=32, width=32)
    write_test_video(src / "walk" / "in.mp4", 3, height=32, width=32)
    source = "../outside.mp4" if where == "dotdot" else str(tmp_path / "outside.mp4")
    (src / "index.csv").write_text(f"label,id,source\nwalk,in,walk/in.mp4\nwalk,out,{source}\n")
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (1, 1)
    assert _stores(dst) == ["walk/in/frames.db"]
    assert "outside" in _errors(dst)[0]["reason"] and "--allow-outside-source" in _errors(dst)[0]["reason"]
    s = convert_dataset(src, dst, ConvertOptions(workers=1, allow_outside_source=True))
    assert _stores(dst) == ["walk/in/frames.db", "walk/out/frames.db"]


def _dataset_pointing_outside(tiny_dataset, tmp_path):
    """A copy of the tiny dataset whose first index row points at a store of another dataset."""
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    shutil.copytree(tiny_dataset, tmp_path / "foreign")
    text = (root / "index.csv").read_text().splitlines()
    first = text[1].split(",")
    path_col = text[0].split(",").index("path")
    first[path_col] = "../foreign/" + first[path_col]
    (root / "index.csv").write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    return root


def test_index_path_outside_the_root_is_refused_by_info(tiny_dataset, tmp_path):
    root = _dataset_pointing_outside(tiny_dataset, tmp_path)
    res = invoke("info", root)
    assert res.exit_code == 1
    assert "index.csv:2: path '../foreign/" in one_line_error(res.output)


def test_index_path_outside_the_root_is_refused_by_training_data(tiny_dataset, tmp_path):
    root = _dataset_pointing_outside(tiny_dataset, tmp_path)
    with pytest.raises(VidnetError, match=r"index.csv:2: path '\.\./foreign/"):
        VideoClipDataset(root, split=None)
