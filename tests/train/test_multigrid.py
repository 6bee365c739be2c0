"""The multigrid batch sampler: keys of the scheduled shape, one pass per epoch, identical shapes on every rank."""

from __future__ import annotations

import pytest
from torch.utils.data import DistributedSampler

from vidnet.train.multigrid import MultigridBatchSampler
from vidnet.train.schedules import MultigridSchedule


def _plan():
    return MultigridSchedule.create(batch=2, frames=8, size=(32, 32), lr_steps=(4,), end_epoch=6,
                                    long_cycle=True, short_cycle=True)


def test_keys_follow_the_schedule():
    plan = _plan()
    s = MultigridBatchSampler(100, plan.shape, seed=3)
    s.set_epoch(0)
    batches = list(s)
    assert len(batches) == len(s)
    for i, batch in enumerate(batches):
        shape = plan.shape(0, i)
        assert len(batch) == shape.batch
        assert {k[1:] for k in batch} == {(shape.frames, shape.height, shape.width)}
    # stage 0 of B=2: long batch 16, short cycle 64, 32, 16; 100 clips -> 64 + 32 then 16 does not fit: dropped
    assert [len(b) for b in batches] == [64, 32]
    flat = [k[0] for b in batches for k in b]
    assert len(set(flat)) == len(flat) and set(flat) <= set(range(100))


def test_epochs_reshuffle_and_are_reproducible():
    plan = _plan()
    a, b = MultigridBatchSampler(40, plan.shape, seed=1), MultigridBatchSampler(40, plan.shape, seed=1)
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b)
    b.set_epoch(6)
    assert list(a) != list(b)


def test_keep_last_and_start_iteration():
    plan = _plan()
    s = MultigridBatchSampler(100, plan.shape, shuffle=False, drop_last=False)
    s.set_epoch(0)
    full = list(s)
    assert [len(b) for b in full] == [64, 32, 4]
    assert [k[0] for b in full for k in b] == list(range(100))
    s.set_epoch(0, start_iteration=1)
    assert list(s) == full[1:]
    assert len(s) == 3


def test_ranks_get_disjoint_indices_and_identical_shapes():
    plan = _plan()
    ranks = []
    for rank in range(2):
        shard = DistributedSampler(range(75), num_replicas=2, rank=rank, shuffle=True, seed=0)
        s = MultigridBatchSampler(75, plan.shape, sampler=shard)
        s.set_epoch(plan.stages[3].start)  # the base-shape stage: batch 2 with short cycle 8, 4, 2
        ranks.append(list(s))
    assert len(ranks[0]) == len(ranks[1]) > 3
    assert [[k[1:] for k in b] for b in ranks[0]] == [[k[1:] for k in b] for b in ranks[1]]
    idx = [{k[0] for b in r for k in b} for r in ranks]
    assert not idx[0] & idx[1]


def test_a_shape_the_model_cannot_train_at_is_refused_before_the_first_step(tmp_path):
    # --batch-size 1 with both cycles: sub-batch BN normalises groups of 1 clip, and the short cycle's small crop
    # leaves tiny_3d's last layers one value per channel (PyTorch: "Expected more than 1 value per channel").
    from tests.train.conftest import MotionClips
    from vidnet.errors import UsageError
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    cfg = TrainConfig.from_flat({
        "network": "tiny_3d", "dataset": str(tmp_path / "motion"), "model_dir": str(tmp_path / "runs"), "workers": 0,
        "batch_size": 1, "end_epoch": 2, "lr_steps": [1], "clip_length": 4, "clip_size": 16, "tensorboard": False,
        "long_cycles": True, "short_cycles": True})
    with pytest.raises(UsageError, match=r"multigrid shape \d+ x \d frames x \d+x\d+: BatchNorm '[\w.]+' would see 1 "
                                         r"value per channel .* use a larger --batch-size or --clip-size"):
        train(cfg, train_set=MotionClips(48, size=(16, 16)), val_set=None)
    assert not any((tmp_path / "runs").rglob("*.pth"))


def test_check_shapes_counts_the_smallest_sub_batch_group():
    from torch import nn

    from vidnet.errors import UsageError
    from vidnet.train.multigrid import check_shapes
    from vidnet.train.schedules import Shape
    from vidnet.train.sub_batch_norm import convert_sub_batch_norm

    model = convert_sub_batch_norm(nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.BatchNorm3d(3)), 2)
    check_shapes(model, [Shape(4, 2, 8, 8)])  # groups of 2 clips: 2 values per channel
    with pytest.raises(UsageError, match=r"batch shape 3 x 2 frames x 8x8: BatchNorm '1' would see 1 value"):
        check_shapes(model, [Shape(4, 2, 8, 8), Shape(3, 2, 8, 8)])  # 3 = a group of 2 and a group of 1
