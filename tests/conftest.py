"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

# A shell that starts pytest in the background (`pytest &` in a script) makes it ignore SIGINT, and every
# subprocess a test starts inherits that: the tests that press Ctrl-C on a `vidnet` process would then see it
# run on to the end. Ctrl-C behaves here as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _private_cost_cache(tmp_path_factory: pytest.TempPathFactory):
    """Model-cost caches of the tests stay out of the user's ~/.cache (subprocesses inherit the variable)."""
    import os

    old = os.environ.get("VIDNET_CACHE_DIR")
    os.environ["VIDNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("VIDNET_CACHE_DIR", None)
    else:
        os.environ["VIDNET_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted dataset: 2 classes x 3 videos of 8-12 frames at 64x48 (index.csv, labels.json, stores).

    Built once per session from the embedded sample generator and ``convert_dataset``; treat it as
    read-only (copy it with ``shutil.copytree`` before damaging it).
    """
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    base = tmp_path_factory.mktemp("tiny_dataset")
    videos, frames = base / "videos", base / "frames"
    make_sample_dataset(videos, SampleOptions(classes=2, videos_per_class=3, min_frames=8, max_frames=12,
                                              width=64, height=48, workers=1))
    summary = convert_dataset(videos, frames, ConvertOptions(workers=1))
    assert summary.failed == 0, summary.problems
    return frames


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
        # Precise BN over this run's 2 batches of 2 clips leaves a last-layer variance near 3e-4, which magnifies
        # the float-level differences between `test`'s and `predict`'s pipelines past the 1e-4 they are held to.
        "precise_bn": "off",
    })
    result = train(cfg)
    path = result.run_dir / "checkpoints" / "ep-0001.pth"
    assert path.is_file()
    return path


@pytest.fixture
def frozen_pretrained_weights(tiny_dataset: Path, tmp_path: Path):
    """``vidnet train -n NETWORK --pretrained-3d FILE`` on `tiny_dataset` for one optimizer step at a learning
    rate of 1e-30 (clip 4 x SIZE): the weights the run started from, as its first checkpoint saved them."""
    from typer.testing import CliRunner

    from vidnet.checkpoint import load_training
    from vidnet.cli import app

    def run(network: str, pretrained: Path, clip_size: int) -> dict:
        r = CliRunner().invoke(app, ["train", "-n", network, "--dataset", str(tiny_dataset), "--model-dir",
                                     str(tmp_path / "runs"), "--pretrained-3d", str(pretrained), "--clip-length", "4",
                                     "--clip-size", str(clip_size), "--batch-size", "2", "--workers", "0",
                                     "--no-tensorboard", "--max-steps", "1", "--lr-base", "1e-30", "--optimizer", "sgd",
                                     "--weight-decay", "0", "--train-frame-interval", "1", "--val-frame-interval", "1"])
        assert r.exit_code == 0, r.output
        return load_training(next((tmp_path / "runs").rglob("ep-*.pth")))["model"]

    return run
