"""A row repeated in an index is an error naming both lines, never a video counted twice."""

from __future__ import annotations

import csv
import shutil

import pytest

from vidnet.data.dataset import VideoClipDataset
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.errors import VidnetError
from vidnet.testing import write_test_video

from .conftest import invoke, one_line_error


def _with_duplicate(tiny_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    lines = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join([*lines, lines[2]]) + "\n")  # line 3 again, as the last line
    return root, len(lines) + 1


def test_info_names_both_lines(tiny_dataset, tmp_path):
    root, last = _with_duplicate(tiny_dataset, tmp_path)
    res = invoke("info", root)
    assert res.exit_code == 1
    assert f"index.csv:{last}: duplicate row:" in one_line_error(res.output)
    assert "also on line 3" in res.output


def test_training_and_test_data_name_both_lines(tiny_dataset, tmp_path):
    root, last = _with_duplicate(tiny_dataset, tmp_path)
    with pytest.raises(VidnetError, match=rf"index.csv:{last}: duplicate row: .* also on line 3"):
        VideoClipDataset(root, split=None)


def test_convert_reports_both_lines_and_goes_on(tmp_path):
    src = tmp_path / "src"
    write_test_video(src / "clips" / "a.mp4", 3, height=32, width=32)
    (src / "index.csv").write_text("label,id,source\nwalk,v1,clips/a.mp4\nwalk,v2,clips/a.mp4\n"
                                   "walk,v1,clips/a.mp4\n")
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (2, 1)
    with open(tmp_path / "dst" / "convert-errors.csv", newline="") as f:
        (rec,) = csv.DictReader(f)
    assert rec["path"].endswith("index.csv:4") and rec["reason"] == "duplicate row: walk/v1 is also on line 2"
