"""``vidnet train`` through the CLI on the tiny converted dataset: a run, a config file, resume, bad options."""

from __future__ import annotations

import csv

import pytest
import yaml
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.cli.train import _parse_gpus
from vidnet.errors import UsageError

TINY = ["--network", "tiny_3d", "--clip-length", "4", "--clip-size", "16", "--batch-size", "2", "--workers", "0",
        "--no-tensorboard", "--train-frame-interval", "1", "--val-frame-interval", "1"]


def test_train_then_resume(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    args = ["train", *TINY, "--dataset", str(tiny_dataset), "--model-dir", str(runs), "--end-epoch", "2"]
    result = CliRunner().invoke(app, [*args, "--max-steps", "2", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "stopped (max_steps) after 2 steps" in result.output
    run = runs / tiny_dataset.name / "tiny_3d"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["clip_size"] == [16, 16] and saved["run"]["precision"] == "bf16"
    result = CliRunner().invoke(app, [*args, "--resume", "auto", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "done: 2 epochs" in result.output and "val top1" in result.output
    rows = list(csv.DictReader((run / "val.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and 0 <= float(rows[-1]["top1"]) <= 1
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"ep-0001.pth", "ep-0002.pth", "best.pth"}


def test_config_file_and_override(tiny_dataset, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(f'network = "tiny_2d"\ndataset = "{tiny_dataset}"\nmodel-dir = "{tmp_path / "r"}"\n'
                    '[schedule]\nend_epoch = 1\nbatch_size = 2\n[data]\nclip_length = 1\nclip_size = 16\nworkers = 0\n'
                    'val_split = ""\n')
    result = CliRunner().invoke(app, ["train", "--config", str(conf), "--lr-base", "0.01", "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "r" / tiny_dataset.name / "tiny_2d" / "config.yaml").read_text())
    assert saved["optim"]["lr_base"] == 0.01 and saved["schedule"]["end_epoch"] == 1
    assert saved["data"]["val_split"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clip-size", "3"], "--clip-size"),
        (["--lr-steps", "9,2"], "--lr-steps"),
        (["--precision", "fp16"], "needs a GPU"),
        (["--long-cycles", "--lr-steps", "5", "--end-epoch", "3"], "--long-cycles"),
        (["--network", "no_such_net"], "no_such_net"),
        (["--resume-epoch", "4"], "no checkpoint for --resume-epoch 4"),
        (["--gpus", "x"], "--gpus"),
        (["--gpus", "2"], "--gpus 2: only"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_dataset, tmp_path, args, message):
    base = ["train", *TINY, "--dataset", str(tiny_dataset), "--model-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*base, *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_gpu_lists(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _parse_gpus("0") == 0 and _parse_gpus("4") == 4
    assert _parse_gpus("1,3") == 2
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,3"
    with pytest.raises(UsageError):
        _parse_gpus("-1")


def test_quickstart_training_plumbing(tiny_dataset, tmp_path):
    import json
    import shutil

    from vidnet.cli.train import quickstart_training

    frames = tmp_path / "frames"
    shutil.copytree(tiny_dataset, frames)
    results = quickstart_training(frames, tmp_path / "runs", epochs=1, workers=0, batch_size=2)
    assert set(results) == {"tiny_3d", "tiny_2d"} and all(0 <= v <= 1 for v in results.values())
    assert json.loads((frames / "dataset.json").read_text())["hflip"] is False  # move_left must stay left
    assert (tmp_path / "runs" / "frames" / "tiny_2d" / "checkpoints" / "ep-0001.pth").is_file()


def test_resume_with_another_optimizer_is_one_line(tiny_dataset, tmp_path):
    """A run folder trained with SGD, resumed with --optimizer adamw: the optimizer state cannot continue (it was a
    KeyError traceback)."""
    args = ["train", *TINY, "--dataset", str(tiny_dataset), "--model-dir", str(tmp_path / "runs"), "--end-epoch", "2"]
    assert CliRunner().invoke(app, [*args, "--max-steps", "1"]).exit_code == 0
    res = CliRunner().invoke(app, [*args, "--resume", "auto", "--optimizer", "adamw"])
    assert res.exit_code == 1 and "trained with --optimizer sgd, not adamw" in res.output, res.output
