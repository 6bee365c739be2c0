"""Precise BN: running statistics recomputed over training batches before validation and saving."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.train.conftest import MotionClips, TinyNet
from tests.train.test_loop import make_cfg, run
from vidnet.checkpoint import BEST_NAME, CHECKPOINT_DIR, load_training
from vidnet.data.preprocessing import KINETICS_MEAN, KINETICS_STD, normalize
from vidnet.errors import UsageError
from vidnet.train.config import TrainConfig
from vidnet.train.precise_bn import resolve_precise_bn, update_bn_stats


def test_update_bn_stats_is_the_mean_of_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4, momentum=0.3), nn.Dropout(0.5), nn.Conv3d(4, 2, 1))
    batches = [torch.randn(3, 3, 2, 4, 4) * (i + 1) + i for i in range(5)]
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in feats]).mean(0)
    variances = torch.stack([f.transpose(0, 1).reshape(4, -1).var(dim=1) for f in feats]).mean(0)  # unbiased
    model.eval()
    tracked = model[1].num_batches_tracked.clone()
    rng = torch.get_rng_state()
    assert update_bn_stats(model, iter(batches), num_batches=4) == 4  # the first 4 only
    means4 = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in feats[:4]]).mean(0)
    assert not torch.allclose(means4, means)
    torch.testing.assert_close(model[1].running_mean, means4)
    assert update_bn_stats(model, iter(batches), num_batches=10) == 5
    torch.testing.assert_close(model[1].running_mean, means)
    torch.testing.assert_close(model[1].running_var, variances)
    # Momentum, mode, counter and the dropout RNG stream are left alone.
    assert model[1].momentum == 0.3 and not model.training and torch.equal(model[1].num_batches_tracked, tracked)
    assert torch.equal(torch.get_rng_state(), rng)
    assert update_bn_stats(nn.Sequential(nn.Linear(2, 2)), iter(batches), 3) == 0


def test_auto_rule_and_option():
    assert resolve_precise_bn("auto", multigrid=True, total_steps=10_000) == 200
    assert resolve_precise_bn("auto", multigrid=False, total_steps=56) == 200
    assert resolve_precise_bn("auto", multigrid=False, total_steps=5_000) == 0
    assert resolve_precise_bn("off", multigrid=True, total_steps=5) == 0
    assert resolve_precise_bn("7", multigrid=False, total_steps=5_000) == 7
    with pytest.raises(UsageError, match="--precise-bn .many.: give auto, off or a positive number"):
        TrainConfig.from_flat({"network": "tiny", "dataset": "d", "precise_bn": "many"})


def _conv_mean_over_epoch(weights: dict, epoch: int, n: int) -> torch.Tensor:
    """Per-channel mean of the first convolution over the epoch's training clips, computed here from the data."""
    net = TinyNet()
    net.load_state_dict(weights)
    data = MotionClips(n)
    data.set_epoch(epoch)
    clips = torch.stack([data[(i, 4, 16, 16)]["clip"] for i in range(n)])
    with torch.no_grad():
        return net.conv(normalize(clips, KINETICS_MEAN, KINETICS_STD)).mean(dim=(0, 2, 3, 4))


def test_saved_statistics_describe_the_saved_weights(tmp_path):
    # 2 epochs x 6 steps of 4 clips: precise BN over all 6 batches of the last epoch makes the checkpoint's
    # running mean the mean of the conv output over those 24 clips, at the saved weights.
    res = run(make_cfg(tmp_path / "on", precise_bn="6", end_epoch=2))
    best = load_training(res.run_dir / CHECKPOINT_DIR / "ep-0002.pth")
    expected = _conv_mean_over_epoch(best["model"], epoch=1, n=24)
    torch.testing.assert_close(best["model"]["bn.running_mean"], expected, rtol=1e-4, atol=1e-5)
    log = (res.run_dir / "train.log").read_text()
    assert "precise BN: statistics of 1 BatchNorm layers over 6 batches of 4 x 4 x 16x16" in log
    assert (res.run_dir / CHECKPOINT_DIR / BEST_NAME).is_file()
    # Without it the running average lags the weights, and a run this short says so.
    off = run(make_cfg(tmp_path / "off", precise_bn="off", end_epoch=2))
    stale = load_training(off.run_dir / CHECKPOINT_DIR / "ep-0002.pth")
    gap = (stale["model"]["bn.running_mean"] - _conv_mean_over_epoch(stale["model"], epoch=1, n=24)).abs().max()
    assert gap > 1e-2
    assert "BatchNorm statistics are stale after 6 optimizer steps" in (off.run_dir / "train.log").read_text()
