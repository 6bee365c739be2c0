"""A checkpoint from a real one-epoch training run of ``tiny_3d`` on the tiny converted dataset."""

from __future__ import annotations

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
