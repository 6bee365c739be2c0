"""Smaller inconsistencies: info's class count, --verify's frame counts, splits that cannot train, Ctrl-C
in training."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vidnet.data.dataset import VideoClipDataset
from vidnet.data.index import read_index, write_index

from .conftest import invoke


def _copy(tiny_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    return root


def test_info_counts_a_label_missing_from_labels_json(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    rows = read_index(root / "index.csv")
    rows[0].label = "stray"  # the store stays where it is; its row names a label without an id
    write_index(root / "index.csv", rows)
    res = invoke("info", root, "--json")
    assert res.exit_code == 1
    info = json.loads(res.output)
    assert info["classes"] == len(info["per_class"]) == 3 and info["unknown_labels"] == ["stray"]


def test_dataset_verify_checks_the_n_frames_file(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    row = read_index(root / "index.csv")[0]
    (root / row.path / "n_frames").write_text("999\n")
    res = invoke("info", root, "--verify", "--json")
    assert res.exit_code == 1
    assert json.loads(res.output)["bad_stores"] == {row.path: [f"n_frames file says 999, the store holds "
                                                              f"{row.n_frames}"]}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_single_class_training_set_and_val_only_class_are_warnings(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    rows = read_index(root / "index.csv")
    for r in rows:  # train: move_left only; val: both classes
        if r.label == "move_right":
            r.split = "val"
    write_index(root / "index.csv", rows)
    logger, handler = logging.getLogger("vidnet.data.dataset"), _Collect()
    logger.addHandler(handler)
    try:
        VideoClipDataset(root, split="train")
        VideoClipDataset(root, split="val")
    finally:
        logger.removeHandler(handler)
    messages = handler.messages
    assert any("split 'train' holds a single class ('move_left')" in m for m in messages), messages
    assert any("split 'val' has 1 class(es) absent from 'train': move_right" in m for m in messages), messages


@pytest.mark.slow
def test_ctrl_c_in_training_saves_and_exits_130(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidnet", "train", "--network", "tiny_3d", "--dataset", tiny_dataset, "--model-dir",
         runs, "--end-epoch", "1000", "--gpus", "0", "--clip-length", "4", "--clip-size", "16", "--batch-size", "2",
         "--workers", "0", "--no-tensorboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = runs / tiny_dataset.name / "tiny_3d"
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "train.csv").is_file():  # one epoch done: training runs
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped (interrupted)" in out + err
    assert any((run / "checkpoints").glob("*.pth"))
