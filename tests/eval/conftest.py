"""A checkpoint from a real one-epoch training run of ``tiny_3d`` on the tiny converted dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ep-0001.pth`` of ``vidnet train --network tiny_3d`` (4 frames, 16x16, 1 epoch) on `tiny_dataset`."""
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    runs = tmp_path_factory.mktemp("eval_runs")
    cfg = TrainConfig.from_flat({
        "network": "tiny_3d", "dataset": str(tiny_dataset), "model_dir": str(runs), "workers": 0, "batch_size": 2,
        "end_epoch": 1, "clip_length": 4, "clip_size": 16, "train_frame_interval": "1", "val_frame_interval": 1,
        "tensorboard": False,
    })
    result = train(cfg)
    path = result.run_dir / "checkpoints" / "ep-0001.pth"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def segment_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted dataset of one-second segments cut from the sample videos (``index.csv`` with
    ``time_start,time_end`` and ``cut=1``): 2 classes x 2 source videos x 2 segments, so every id repeats.

    The first video of each class gives the ``train`` segments, the second the ``val`` ones.
    """
    from vidnet.data.index import read_index, write_index
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    base = tmp_path_factory.mktemp("segment_dataset")
    videos, frames = base / "videos", base / "frames"
    make_sample_dataset(videos, SampleOptions(classes=2, videos_per_class=2, min_frames=50, max_frames=50,
                                              width=64, height=48, workers=1))
    rows = []
    for n, row in enumerate(read_index(videos / "index.csv")):
        for start in (0, 1):
            rows.append(dataclasses.replace(row, time_start=float(start), time_end=float(start + 1),
                                            split="train" if n % 2 == 0 else "val", extra={**row.extra, "cut": "1"}))
    write_index(videos / "index.csv", rows)
    summary = convert_dataset(videos, frames, ConvertOptions(workers=1))
    assert summary.failed == 0, summary.problems
    return frames
