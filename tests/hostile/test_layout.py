"""Layout detection looks at every class folder; stray folders, hidden files and link loops are ignored and
reported, never taken for the dataset's layout."""

from __future__ import annotations

import csv
import os

from vidnet.data.ingest import ConvertOptions, convert_dataset

from .conftest import video_tree


def _problems(dst):
    with open(dst / "convert-errors.csv", newline="") as f:
        return {os.path.basename(r["path"]): r["reason"] for r in csv.DictReader(f)}


def test_stray_empty_folders_in_the_first_class_do_not_switch_the_layout(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 1, "b": 2, "c": 2}), tmp_path / "dst"
    (src / "a" / "extracted").mkdir()
    (src / "a" / "old").mkdir()
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (5, 0)
    problems = _problems(dst)
    assert problems["extracted"] == problems["old"] == "ignored: a folder without frames"


def test_symlink_loops_beside_videos_are_ignored_and_reported(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 1, "b": 1}), tmp_path / "dst"
    os.symlink("..", src / "a" / "up")  # a loop through the parent
    os.symlink(".", src / "a" / "self")
    os.symlink("loop", src / "a" / "loop")  # a link to itself
    (src / "a" / ".hidden.mp4").write_bytes(b"")
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (2, 0)
    problems = _problems(dst)
    assert problems["up"] == problems["self"] == "ignored: a folder without frames"
    assert problems["loop"] == "ignored: a link that loops or leads nowhere"
    assert problems[".hidden.mp4"] == "ignored: hidden"
