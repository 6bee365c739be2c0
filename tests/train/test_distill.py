"""Distillation in the trainer (--teacher) and training of structurally pruned models (--pretrained-3d)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.train.conftest import MotionClips, TinyNet
from vidnet.checkpoint import CheckpointError, find_checkpoints, load_training
from vidnet.cli import app
from vidnet.errors import UsageError
from vidnet.network import create_model
from vidnet.network.compress import channel_spec, prune_channels
from vidnet.network.weights import load_model
from vidnet.train.config import TrainConfig
from vidnet.train.loop import train

LABELS = {"right": 0, "left": 1}


def make_cfg(tmp_path, **kw):
    base = {"network": "tiny", "dataset": str(tmp_path / "motion"), "model_dir": str(tmp_path / "runs"),
            "workers": 0, "batch_size": 4, "end_epoch": 1, "lr_steps": [], "clip_length": 4, "clip_size": 16,
            "tensorboard": False, "log_interval": 100, "lr_base": 0.05}
    return TrainConfig.from_flat({**base, **kw})


def run(cfg, model=None, n=16):
    torch.manual_seed(123)
    return train(cfg, model=model or TinyNet(), train_set=MotionClips(n), val_set=MotionClips(8, seed=9))


def last(result):
    return load_training(find_checkpoints(result.run_dir / "checkpoints")[-1][2])


def save_teacher(path, labels=LABELS, **extra):
    torch.manual_seed(7)
    torch.save({"network": "tiny_3d", "model": create_model("tiny_3d", num_classes=len(labels)).state_dict(),
                "labels": labels, **extra}, path)
    return path


def test_alpha_zero_is_plain_training_and_alpha_changes_it(tmp_path):
    teacher = save_teacher(tmp_path / "teacher.pth")
    plain = last(run(make_cfg(tmp_path / "a")))["model"]
    zero = run(make_cfg(tmp_path / "b", teacher=str(teacher), distill_alpha=0.0))
    for k, v in plain.items():
        torch.testing.assert_close(last(zero)["model"][k], v, rtol=0, atol=1e-6)
    soft = last(run(make_cfg(tmp_path / "c", teacher=str(teacher), distill_alpha=0.9, distill_temperature=2.0)))
    assert not torch.allclose(soft["model"]["fc.weight"], plain["fc.weight"])
    # The settings are in the resolved config; the teacher's weights are not in the student's checkpoint.
    assert soft["config"]["distill"] == {"teacher": str(teacher), "teacher_network": None, "distill_alpha": 0.9,
                                         "distill_temperature": 2.0}
    assert set(soft["model"]) == set(plain) and "teacher" not in soft


def test_teacher_errors(tmp_path):
    with pytest.raises(CheckpointError, match="--teacher .*nope.pth: checkpoint not found"):
        run(make_cfg(tmp_path, teacher=str(tmp_path / "nope.pth")))
    other = save_teacher(tmp_path / "other.pth", labels={"left": 0, "right": 1})
    with pytest.raises(UsageError, match="label map .* differs"):
        run(make_cfg(tmp_path, teacher=str(other)))
    three = save_teacher(tmp_path / "three.pth", labels={"a": 0, "b": 1, "c": 2})
    with pytest.raises(UsageError, match="differs"):
        run(make_cfg(tmp_path, teacher=str(three)))
    torch.save(create_model("tiny_3d", num_classes=2).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(UsageError, match="does not name its network"):
        run(make_cfg(tmp_path, teacher=str(tmp_path / "bare.pth")))
    run(make_cfg(tmp_path / "bare", teacher=str(tmp_path / "bare.pth"), teacher_network="tiny_3d"))  # with a name
    for bad, flag in (({"distill_alpha": 1.5}, "--distill-alpha"), ({"distill_temperature": 0}, "--distill-temp"),
                      ({"teacher_network": "tiny_3d"}, "--teacher-network")):
        with pytest.raises(UsageError, match=flag):
            make_cfg(tmp_path, **bad)


def test_teacher_at_another_clip_shape_is_resized(tmp_path):
    # The teacher was trained on 8x24x24 clips: it sees the student's 4x16x16 batches resized to that shape.
    seen = []
    teacher = save_teacher(tmp_path / "t.pth", preprocessing={"clip_length": 8, "clip_size": [24, 24]})
    from vidnet.network.tiny import TinyNet as Tiny3d

    hook = Tiny3d.forward

    def spy(self, x):
        seen.append(tuple(x.shape[2:]))
        return hook(self, x)

    Tiny3d.forward = spy
    try:
        run(make_cfg(tmp_path, teacher=str(teacher), distill_alpha=0.5), n=8)
    finally:
        Tiny3d.forward = hook
    assert seen and set(seen) == {(8, 24, 24)}


def test_pruned_checkpoint_trains_resumes_and_reloads(tmp_path):
    torch.manual_seed(0)
    base = create_model("tiny_3d", num_classes=2)
    pruned, chains = prune_channels(base, 0.5)
    assert chains
    path = tmp_path / "pruned.pth"
    torch.save({"network": "tiny_3d", "model": pruned.state_dict(), "architecture": channel_spec(pruned),
                "labels": LABELS}, path)
    cfg = dict(network="tiny_3d", pretrained_3d=str(path), end_epoch=2)
    first = train(make_cfg(tmp_path, **cfg, max_steps=1), train_set=MotionClips(8), val_set=None)
    ck = last(first)
    assert ck["architecture"] == channel_spec(pruned)  # the pruned widths travel with the checkpoint
    assert {k: tuple(v.shape) for k, v in ck["model"].items()} == {k: tuple(v.shape)
                                                                  for k, v in pruned.state_dict().items()}
    # Resume rebuilds the pruned shapes, then every tool's loader does too.
    again = train(make_cfg(tmp_path, **cfg, resume="auto"), train_set=MotionClips(8), val_set=None)
    assert again.epochs == 2 and again.steps == 4
    loaded = load_model(find_checkpoints(again.run_dir / "checkpoints")[-1][2])
    model, name = loaded.model, loaded.network
    assert name == "tiny_3d" and sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.parameters())
    x = torch.randn(2, 3, 4, 16, 16)
    assert model(x).shape == base.eval()(x).shape == (2, 2)
    from vidnet.eval.multiview import load_eval_model  # vidnet test / compress --dataset

    em = load_eval_model(find_checkpoints(again.run_dir / "checkpoints")[-1][2])
    torch.testing.assert_close(em.model(x), model(x))
    # Without its architecture the pruned weights do not fit the registry build: one clear line.
    torch.save({"network": "tiny_3d", "model": pruned.state_dict()}, tmp_path / "flat.pth")
    with pytest.raises(CheckpointError, match="does not fit tiny_3d"):
        load_model(tmp_path / "flat.pth")


TINY = ["--clip-length", "4", "--batch-size", "2", "--workers", "0", "--no-tensorboard",
        "--train-frame-interval", "1", "--val-frame-interval", "1"]


def test_cli_distil_then_prune_and_fine_tune(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["train", "-n", "tiny_3d", *TINY, "--clip-size", "24", "--dataset",
                                   str(tiny_dataset), "--model-dir", str(runs / "t"), "--end-epoch", "1"])
    assert res.exit_code == 0, res.output
    teacher = runs / "t" / tiny_dataset.name / "tiny_3d" / "checkpoints" / "ep-0001.pth"
    res = CliRunner().invoke(app, ["train", "-n", "tiny_3d", *TINY, "--clip-size", "16", "--dataset",
                                   str(tiny_dataset), "--model-dir", str(runs / "s"), "--end-epoch", "1",
                                   "--teacher", str(teacher), "--distill-alpha", "0.7", "--distill-temperature", "3"])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((runs / "s" / tiny_dataset.name / "tiny_3d" / "config.yaml").read_text())
    assert saved["distill"]["distill_alpha"] == 0.7 and saved["distill"]["teacher"] == str(teacher)
    res = CliRunner().invoke(app, ["train", "-n", "tiny_3d", *TINY, "--dataset", str(tiny_dataset), "--model-dir",
                                   str(runs / "x"), "--teacher", str(tmp_path / "missing.pth")])
    assert res.exit_code != 0 and "checkpoint not found" in res.output and "Traceback" not in res.output
    # Prune the trained model, fine-tune each pruned one for an epoch (distilled from the unpruned one).
    out = tmp_path / "compressed"
    res = CliRunner().invoke(app, ["compress", "--checkpoint", str(teacher), "--clip", "4x24x24", "--ratios", "0.5",
                                   "--sparsity", "", "--quantize", "", "--repeats", "1", "--dataset",
                                   str(tiny_dataset), "--out", str(out), "--finetune-epochs", "1",
                                   "--finetune-distill", "0.5", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["variant"]: r for r in (json.loads(line) for line in res.output.splitlines() if line.startswith("{"))}
    assert list(rows) == ["base", "prune 0.50", "prune 0.50 +ft"]
    assert rows["prune 0.50 +ft"]["params"] == rows["prune 0.50"]["params"] < rows["base"]["params"]
    assert all(0 <= r["accuracy"] <= 1 for r in rows.values())
    res = CliRunner().invoke(app, ["compress", "-n", "tiny_3d", "--finetune-epochs", "1", "--ratios", "0.5"])
    assert res.exit_code != 0 and "--finetune-epochs needs" in res.output
