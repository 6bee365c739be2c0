"""The training loop on CPU: exact resume, bf16 autocast, non-finite losses, accumulation, multigrid, checkpoints."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from tests.train.conftest import MotionClips, TinyNet
from vidnet.checkpoint import CheckpointError, find_checkpoints, load_training
from vidnet.errors import VidnetError
from vidnet.train.config import TrainConfig
from vidnet.train.loop import build_optimizer, train


def make_cfg(tmp_path, **kw):
    base = {"network": "tiny", "dataset": str(tmp_path / "motion"), "model_dir": str(tmp_path / "runs"),
            "workers": 0, "batch_size": 4, "end_epoch": 2, "lr_steps": [1], "clip_length": 4, "clip_size": 16,
            "tensorboard": False, "log_interval": 100, "lr_base": 0.05}
    return TrainConfig.from_flat({**base, **kw})


def run(cfg, n=24, val=8, model=None):
    torch.manual_seed(123)  # the model's initial weights; train() reseeds everything else
    return train(cfg, model=model or TinyNet(), train_set=MotionClips(n), val_set=MotionClips(val, seed=9) if val
                 else None)


def weights(result):
    return load_training(sorted(find_checkpoints(result.run_dir / "checkpoints"))[-1][2])


def test_resume_mid_epoch_gives_identical_weights(tmp_path):
    # 2 epochs x 6 steps straight, against 7 steps (stopped inside epoch 1) + resume auto + the rest.
    straight = run(make_cfg(tmp_path / "a", ema=0.9))
    first = run(make_cfg(tmp_path / "b", ema=0.9, max_steps=7))
    assert (first.stopped, first.steps) == ("max_steps", 7)
    assert [(e, i) for e, i, _ in find_checkpoints(first.run_dir / "checkpoints")] == [(1, 0), (1, 1)]
    second = run(make_cfg(tmp_path / "b", ema=0.9, resume="auto"))
    assert (second.steps, second.epochs) == (straight.steps, 2) == (12, 2)
    a, b = weights(straight), weights(second)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert straight.val == second.val
    assert (straight.run_dir / "train.csv").read_text() .split("\n")[2].split(",")[:4] == (
        second.run_dir / "train.csv").read_text().split("\n")[2].split(",")[:4]  # epoch 1 loss and accuracy
    # The CSV of the resumed run holds each epoch once.
    rows = list(csv.DictReader((second.run_dir / "train.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    # The resumed epoch's speed counts the 5 x 4 clips trained after the resume, not the 4 trained before.
    assert float(rows[1]["clips_per_s"]) * float(rows[1]["time"]) == pytest.approx(20, rel=1e-6)


def test_resume_at_epoch_boundary_matches(tmp_path):
    straight = run(make_cfg(tmp_path / "a"))
    run(make_cfg(tmp_path / "b", max_steps=6))
    again = run(make_cfg(tmp_path / "b", resume_epoch=1))
    for k, v in weights(straight)["model"].items():
        assert torch.equal(v, weights(again)["model"][k])


def test_checkpoint_contents_and_mismatch(tmp_path):
    res = run(make_cfg(tmp_path, end_epoch=1, lr_steps=[]))
    ck = load_training(res.run_dir / "checkpoints" / "ep-0001.pth")
    assert ck["labels"] == {"right": 0, "left": 1} and ck["network"] == "tiny"
    assert ck["preprocessing"]["clip_length"] == 4 and ck["preprocessing"]["clip_size"] == [16, 16]
    assert len(ck["preprocessing"]["mean"]) == 3 and ck["config"]["schedule"]["batch_size"] == 4
    assert (res.run_dir / "config.yaml").is_file() and (res.run_dir / "checkpoints" / "best.pth").is_file()
    other = TrainConfig.from_flat({**make_cfg(tmp_path).flat(), "network": "tiny", "resume": str(
        res.run_dir / "checkpoints" / "ep-0001.pth")})
    with pytest.raises(CheckpointError, match="weights do not fit tiny"):
        run(other, model=TinyNet(width=4))
    with pytest.raises(CheckpointError, match="no checkpoint for --resume-epoch 7"):
        run(make_cfg(tmp_path, resume_epoch=7))
    with pytest.raises(CheckpointError, match="not found"):
        run(make_cfg(tmp_path, resume=str(tmp_path / "nope.pth")))


def test_bf16_autocast_on_cpu(tmp_path):
    model = TinyNet()
    seen = []
    model.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    res = run(make_cfg(tmp_path, precision="bf16", end_epoch=1, lr_steps=[]), model=model)
    assert res.steps == 6 and torch.bfloat16 in seen
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert math.isfinite(res.val["loss"]) and 0 < res.val["loss"] < 10  # neither NaN nor inf


class NaNNet(TinyNet):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_non_finite_loss_stops_with_position(tmp_path):
    with pytest.raises(VidnetError, match=r"not finite 3 times in a row \(last at epoch 0, iteration 2, lr 0.05"):
        run(make_cfg(tmp_path, nan_patience=3), model=NaNNet())


def test_accumulation_steps_and_multigrid(tmp_path):
    res = run(make_cfg(tmp_path, accumulate=2, end_epoch=1, lr_steps=[]), n=24)
    assert res.steps == 3
    # B=1, T=4, S=16, long + short cycles over 2 learning-rate stages and a fine-tune: 6 epochs.
    res = run(make_cfg(tmp_path / "mg", batch_size=1, long_cycles=True, short_cycles=True, end_epoch=4,
                       lr_steps=[2]), n=48, val=0)
    assert res.epochs == 6
    rows = list(csv.DictReader((res.run_dir / "train.csv").open()))
    assert len(rows) == 6 and float(rows[0]["lr"]) > float(rows[-1]["lr"])


def test_optimizer_groups():
    cfg = TrainConfig.from_flat({"network": "t", "dataset": "d", "weight_decay": 0.1})
    opt = build_optimizer(TinyNet(), cfg, num_classes=2)
    decays = {len(g["params"]): g["weight_decay"] for g in opt.param_groups}
    assert decays == {2: 0.1, 3: 0.0}  # conv + fc weights decay; bn weight, bn bias and fc bias do not
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    cfg = TrainConfig.from_flat({"network": "t", "dataset": "d", "optimizer": "adamw", "decay_norm_bias": True})
    opt = build_optimizer(TinyNet(), cfg, num_classes=2)
    assert isinstance(opt, torch.optim.AdamW) and [g["weight_decay"] for g in opt.param_groups] == [1e-4]


class OOMNet(TinyNet):
    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    with pytest.raises(VidnetError, match=r"out of memory at batch 4 x 4 frames x 16x16: use a smaller --batch-size"):
        run(make_cfg(tmp_path), model=OOMNet())


def test_too_few_clips_for_a_batch(tmp_path):
    with pytest.raises(VidnetError, match="epoch 0 has no full batch: 3 clips over 1 process"):
        run(make_cfg(tmp_path), n=3)


@pytest.mark.parametrize(("cycles", "setting", "expected"), [(True, "auto", 2), (False, "auto", None),
                                                             (True, "off", None), (False, "3", 3)])
def test_sub_batch_norm_is_switched_on_with_multigrid(tmp_path, cycles, setting, expected):
    from vidnet.train.sub_batch_norm import SubBatchNorm3d

    model = TinyNet()
    run(make_cfg(tmp_path, batch_size=2, short_cycles=cycles, end_epoch=1, lr_steps=[], bn_sub_batch=setting,
                 max_steps=2), n=24, val=0, model=model)
    subs = [m.sub_batch for m in model.modules() if isinstance(m, SubBatchNorm3d)]
    assert subs == ([] if expected is None else [expected] * len(subs)) and (expected is None or subs)
