"""The index is a fact about DST: it lists exactly the complete stores, and label ids never change."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

from vidnet.data.index import read_index, read_labels
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.testing import write_test_video

from .conftest import invoke, video_tree


def _paths(dst):
    return sorted(r.path for r in read_index(dst / "index.csv"))


def _on_disk(dst):
    return sorted(p.parent.relative_to(dst).as_posix() for p in dst.rglob("frames.db"))


def _snapshot(dst):
    return {name: ((dst / name).read_bytes(), (dst / name).stat().st_mtime_ns) for name in ("index.csv", "labels.json")}


def test_limit_rerun_keeps_every_row_and_label(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 3, "b": 3, "c": 3}), tmp_path / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    labels = read_labels(dst / "labels.json")
    s = convert_dataset(src, dst, ConvertOptions(workers=1, limit=2))
    assert s.skipped == 2
    assert _paths(dst) == _on_disk(dst) and len(_on_disk(dst)) == 9
    assert read_labels(dst / "labels.json") == labels


def test_rerun_after_the_source_lost_its_videos_touches_neither_file(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"move_down": 2, "move_up": 2}), tmp_path / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    before = _snapshot(dst)
    shutil.rmtree(src / "move_down")
    for f in (src / "move_up").iterdir():
        f.write_bytes(b"")  # every remaining video now fails
    res = invoke("convert", src, dst, "--workers", "1", "-q", "--overwrite")
    assert res.exit_code == 1 and "nothing converted" in res.output
    assert _snapshot(dst) == before
    assert read_labels(dst / "labels.json") == {"move_down": 0, "move_up": 1}


def test_dst_inside_src_rerun_keeps_the_index(tmp_path):
    src = video_tree(tmp_path / "src", {"a": 2, "b": 2})
    dst = src / "0converted"  # sorts first: the old detection took its label folders for frame folders
    convert_dataset(src, dst, ConvertOptions(workers=1))
    first = _paths(dst)
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.skipped, s.failed) == (4, 0)  # DST is no class folder of SRC
    assert _paths(dst) == first == _on_disk(dst)


def test_new_label_is_appended_and_existing_ids_never_change(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 1, "c": 1}), tmp_path / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    assert read_labels(dst / "labels.json") == {"a": 0, "c": 1}
    video_tree(src, {"b": 1})  # sorts between the two
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert read_labels(dst / "labels.json") == {"a": 0, "c": 1, "b": 2}
    assert s.new_labels == ["b"]


def test_reindex_rebuilds_index_and_labels_from_the_stores(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write_test_video(src / "clips" / f"{i}.mp4", 3, height=32, width=32)
    (src / "index.csv").write_text("label,id,split,source\na,v0,train,clips/0.mp4\na,v1,val,clips/1.mp4\n"
                                   "b,v2,train,clips/2.mp4\n")
    dst = tmp_path / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    good = (dst / "index.csv").read_text()
    (dst / "index.csv").write_text("label,id\n")  # lost (or clobbered by an old version)
    res = invoke("convert", dst, "--reindex")
    assert res.exit_code == 0, res.output
    assert (dst / "index.csv").read_text() == good  # splits and sources come back from the stores' meta
    assert read_labels(dst / "labels.json") == {"a": 0, "b": 1}


def test_interrupted_run_indexes_the_stores_it_finished(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    # Enough work that the interrupt lands mid-run on a fast idle machine too (8 x 60 frames once finished first).
    for i in range(16):
        write_test_video(src / "c" / f"v{i}.mp4", 200, height=160, width=224, seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "vidnet", "convert", src, dst, "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (dst.exists() and len(list(dst.rglob("frames.db"))) >= 2):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert 2 <= len(_on_disk(dst)) < 16, "the interrupt should land mid-run"
    assert _paths(dst) == _on_disk(dst)
    assert read_labels(dst / "labels.json") == {"c": 0}

