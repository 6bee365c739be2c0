"""The default split of class folders: stratified per class, deterministic, printed; train says how to make one."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.index import read_index, write_index
from vidnet.data.splits import stratified_split
from vidnet.errors import UsageError
from vidnet.testing import write_test_video


def test_every_class_gets_its_share_whatever_the_order():
    # The case: --val-fraction 0.5 over small classes left one class without any val video.
    videos = [(f"class{c}", f"v{i}") for c in range(8) for i in range(c % 3 + 2)]
    split = stratified_split(videos, 0.5)
    for c in range(8):
        mine = [split[(f"class{c}", f"v{i}")] for i in range(c % 3 + 2)]
        assert mine.count("val") == round(len(mine) * 0.5) or mine.count("val") == 1, (c, mine)
        assert "train" in mine and "val" in mine
    shuffled = videos[:]
    random.Random(1).shuffle(shuffled)
    assert stratified_split(shuffled, 0.5) == split  # the listing order does not matter
    assert stratified_split([("a", "x")], 0.5) == {("a", "x"): "train"}  # one video trains
    assert set(stratified_split(videos, 0.0).values()) == {"train"}
    tiny = stratified_split([("a", f"v{i}") for i in range(10)], 0.01)
    assert list(tiny.values()).count("val") == 1  # at least one val video per class


def test_class_folders_get_a_default_split_printed_in_the_summary(tmp_path):
    src = tmp_path / "src"
    for c in ("jump", "run"):
        for i in range(5):
            write_test_video(src / c / f"{c}{i}.mp4", 2)
    res = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "ds"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    rows = read_index(tmp_path / "ds" / "index.csv")
    for c in ("jump", "run"):  # 0.2 of 5 is 1 val video per class
        assert sorted(r.split for r in rows if r.label == c) == ["train"] * 4 + ["val"]
    assert "splits: train 8, val 2" in res.output


def test_train_without_a_split_says_how_to_make_one(tiny_dataset, tmp_path):
    import shutil

    from vidnet.data.dataset import VideoClipDataset

    root = tmp_path / "nosplit"
    shutil.copytree(tiny_dataset, root)
    rows = read_index(root / "index.csv")
    for r in rows:
        r.split = ""
    write_index(root / "index.csv", rows)
    with pytest.raises(UsageError, match=r"no videos in split 'train' \(its index.csv gives no video a split: run "
                                         r"the same `vidnet convert` again with --val-fraction 0.2"):
        VideoClipDataset(root, "train")
    with pytest.raises(UsageError, match=r"no videos in split 'test' \(its splits: train, val\)"):
        VideoClipDataset(tiny_dataset, "test")
