"""The multigrid batch sampler: keys of the scheduled shape, one pass per epoch, identical shapes on every rank."""

from __future__ import annotations

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
