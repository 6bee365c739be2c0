"""Learning-rate and multigrid schedules as pure functions: exact values per step and per iteration."""

from __future__ import annotations

import math

import pytest

from vidnet.errors import UsageError
from vidnet.train.schedules import MultigridSchedule, Shape, even, lr_at, stage_end_epochs


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0, 0.1), (14.99, 0.1), (15, 0.01), (29.5, 0.01), (30, 0.001), (40, 1e-4), (99.9, 1e-4)],
)
def test_multistep(progress, expected):
    assert lr_at(progress, base_lr=0.1, steps=(15, 30, 40), factor=0.1, end_epoch=100) == pytest.approx(expected)


def test_warmup_is_linear_to_the_schedule_value():
    kw = dict(base_lr=0.4, steps=(10,), end_epoch=20, warmup_epochs=2, warmup_start=0.25)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(1, **kw) == pytest.approx(0.25)
    assert lr_at(2, **kw) == pytest.approx(0.4)
    assert lr_at(10, **kw) == pytest.approx(0.04)


def test_cosine():
    kw = dict(base_lr=1.0, schedule="cosine", end_epoch=12, warmup_epochs=2, min_lr=0.1)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(1, **kw) == pytest.approx(0.5)
    assert lr_at(2, **kw) == pytest.approx(1.0)
    assert lr_at(7, **kw) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert lr_at(12, **kw) == pytest.approx(0.1)
    assert lr_at(2 + 10 / 3, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3)))


def test_unknown_schedule():
    with pytest.raises(UsageError, match="poly"):
        lr_at(1, base_lr=0.1, schedule="poly", end_epoch=10)


def test_stage_lengths_reproduce_pyslowfast_kinetics_schedule():
    # SlowFast R50 8x8 multigrid (T=32, S=224, steps 0/94/154/196, 239 epochs, x1.5): Wu et al. (arXiv 1912.00998) and
    # facebookresearch/SlowFast, whose
    # mean batch factors include PySlowFast's short cycle at absolute crops (16,8,8 / 8,4,4 / 8,4,2 / 4,2,1)/3.
    ends = stage_end_epochs((0, 94, 154, 196), 239, (32 / 3, 16 / 3, 14 / 3, 7 / 3), 1.5)
    assert [e for *_, e in ends] == [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 358]
    assert [s for s, *_ in ends] == [0] * 4 + [1] * 4 + [2] * 4 + [3]


# Batch, frames and crop for base B=8, T=16, S=224: long stages down, short phases across (the same set of shapes
# as the original SRTG code's table (train/model.py), whose short phase 0 is the unchanged shape).
TABLE = {
    0: [(256, 4, 80), (128, 4, 112), (64, 4, 158)],
    1: [(128, 8, 80), (64, 8, 112), (32, 8, 158)],
    2: [(64, 8, 112), (32, 8, 158), (16, 8, 224)],
    3: [(32, 16, 112), (16, 16, 158), (8, 16, 224)],
}


def _plan(**kw):
    base = dict(batch=8, frames=16, size=(224, 224), lr_steps=(15, 30, 40), end_epoch=100)
    return MultigridSchedule.create(**{**base, **kw})


def test_long_and_short_cycle_shapes_per_iteration():
    plan = _plan(long_cycle=True, short_cycle=True)
    assert [s.end for s in plan.stages] == [21, 32, 37, 40, 62, 72, 78, 80, 95, 102, 105, 107, 150]
    assert plan.end_epoch == 150  # 100 x 1.5
    assert plan.lr_steps == (40, 80, 107)
    for stage in plan.stages[:-1]:
        k = [8, 4, 2, 1].index(int(stage.shape.lr_scale))
        for epoch in (stage.start, stage.end - 1):
            got = [plan.shape(epoch, i) for i in range(7)]
            assert [(s.batch, s.frames, s.height) for s in got] == TABLE[k] * 2 + TABLE[k][:1]
            assert all(s.height == s.width for s in got)
            assert {s.lr_scale for s in got} == {stage.shape.lr_scale}  # lr follows the long cycle only
    final = plan.stages[-1]
    assert (final.start, final.end, final.lr_stage, final.short_cycle) == (107, 150, 3, False)
    assert {plan.shape(e, i) for e in (107, 149, 500) for i in range(4)} == {Shape(8, 16, 224, 224, 1.0)}


def test_short_cycle_alone_keeps_the_base_epochs():
    plan = _plan(short_cycle=True)
    assert plan.end_epoch == 100 and plan.lr_steps == (15, 30, 40)
    assert [(s.batch, s.frames, s.height, s.lr_scale) for s in (plan.shape(50, i) for i in range(3))] == [
        (32, 16, 112, 1.0), (16, 16, 158, 1.0), (8, 16, 224, 1.0)]


def test_no_cycles_is_the_base_shape():
    plan = _plan()
    assert {plan.shape(e, i) for e in (0, 99) for i in range(5)} == {Shape(8, 16, 224, 224)}


def test_long_cycle_alone_and_rectangular_crops():
    plan = _plan(long_cycle=True, size=(112, 160), frames=8)
    assert [plan.shape(0, i) for i in range(2)] == [Shape(64, 2, 80, 114, 8.0)] * 2
    assert plan.shape(plan.stages[2].start, 0) == Shape(16, 4, 112, 160, 2.0)


def test_long_cycle_needs_lr_steps():
    with pytest.raises(UsageError, match="--long-cycles needs --lr-steps"):
        _plan(long_cycle=True, lr_steps=())
    with pytest.raises(UsageError, match="--lr-steps"):
        _plan(long_cycle=True, lr_steps=(120,))


def test_even():
    assert [even(x) for x in (79.0, 79.2, 111.7, 158.39, 1, 0.2)] == [80, 80, 112, 158, 2, 2]


@pytest.mark.parametrize(
    ("cap", "scales"),
    [(None, [8.0, 4.0, 2.0, 1.0]), (2.0, [2.0, 2.0, 2.0, 1.0]), (4.0, [4.0, 4.0, 2.0, 1.0])],
)
def test_lr_scale_max_caps_the_long_cycle_multiplier_only(cap, scales):
    plan = _plan(long_cycle=True, short_cycle=True, lr_scale_max=cap)
    uncapped = _plan(long_cycle=True, short_cycle=True)
    assert [s.shape.lr_scale for s in plan.stages[:4]] == scales
    assert [s.shape.lr_scale for s in plan.stages[4:8]] == scales  # every learning-rate stage's long cycle
    # Shapes and stage lengths are those of the linear rule: the cap changes the learning rate alone.
    assert [(s.start, s.end) for s in plan.stages] == [(s.start, s.end) for s in uncapped.stages]
    assert [(s.batch, s.frames, s.height) for s in (plan.shape(0, i) for i in range(3))] == TABLE[0]
    assert {plan.shape(0, i).lr_scale for i in range(3)} == {scales[0]}
    assert plan.shape(plan.end_epoch - 1, 0).lr_scale == 1.0


@pytest.mark.parametrize(
    ("stages", "per_epoch"),
    # The sample-dataset run of docs/train.md: B=4, 8x72x96, --end-epoch 16 --lr-steps 8,13, 360 clips.
    [((7, 11, 13, 14, 19, 21, 22, 23, 24), [4] * 7 + [9] * 4 + [18] * 2 + [38] + [4] * 5 + [9] * 2 + [18, 38, 90])],
)
def test_sample_dataset_schedule(stages, per_epoch):
    from vidnet.train.multigrid import MultigridBatchSampler

    plan = MultigridSchedule.create(batch=4, frames=8, size=(72, 96), lr_steps=(8, 13), end_epoch=16, long_cycle=True,
                                    short_cycle=True, lr_scale_max=2.0)
    assert tuple(s.end for s in plan.stages) == stages
    assert [(plan.shape(0, i).batch, plan.shape(0, i).frames, plan.shape(0, i).height, plan.shape(0, i).width)
            for i in range(3)] == [(128, 2, 24, 34), (64, 2, 36, 48), (32, 2, 50, 68)]
    sampler = MultigridBatchSampler(360, plan.shape)
    counts = []
    for epoch in range(plan.end_epoch):
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    assert counts == per_epoch and sum(counts) == 322


@pytest.mark.parametrize(
    ("frames", "min_frames", "long_batches", "ends"),
    [
        (8, 1, [32, 16, 8, 4], [7, 11, 13, 14, 19, 21, 22, 23, 24]),
        (8, 2, [32, 16, 8, 4], [7, 11, 13, 14, 19, 21, 22, 23, 24]),
        (8, 4, [16, 8, 4], [8, 12, 13, 18, 21, 22, 24]),  # the 2-frame stage is left out
        (8, 8, [4], [12, 20, 24]),  # only the base stage (with the short cycle), then the fine-tune
        (16, 4, [32, 16, 8, 4], [7, 11, 13, 14, 19, 21, 22, 23, 24]),  # T/4 = 4 frames is kept
    ],
)
def test_long_cycle_min_frames(frames, min_frames, long_batches, ends):
    plan = MultigridSchedule.create(batch=4, frames=frames, size=(72, 96), lr_steps=(8, 13), end_epoch=16,
                                    long_cycle=True, short_cycle=True, lr_scale_max=2.0, min_frames=min_frames)
    assert [s.end for s in plan.stages] == ends
    first = [s.shape.batch for s in plan.stages if s.lr_stage == 0]
    assert first == long_batches
    assert all(s.shape.frames >= min(min_frames, frames) for s in plan.stages)
    assert plan.stages[-1].shape == Shape(4, frames, 72, 96, 1.0) and not plan.stages[-1].short_cycle


@pytest.mark.parametrize(
    ("epoch_factor", "ends", "steps"),
    [
        # docs/train.md, "Multigrid on the sample dataset": the logged stage tables and step counts of the runs
        (1.5, [8, 12, 13, 18, 21, 22, 24], 499),
        (1.7, [9, 13, 15, 21, 23, 25, 27], 575),
        (1.8, [9, 14, 16, 22, 25, 26, 29], 663),  # the recipe: a 3-epoch fine-tune stage, as the base's last stage
    ],
)
def test_sample_recipe_epoch_factors(epoch_factor, ends, steps):
    plan = MultigridSchedule.create(batch=4, frames=8, size=(72, 96), lr_steps=(8, 13), end_epoch=16,
                                    long_cycle=True, short_cycle=True, lr_scale_max=2.0, min_frames=4,
                                    epoch_factor=epoch_factor)
    assert [s.end for s in plan.stages] == ends
    from vidnet.train.multigrid import MultigridBatchSampler

    sampler = MultigridBatchSampler(360, plan.shape)  # 360 training clips
    total = 0
    for epoch in range(plan.end_epoch):
        sampler.set_epoch(epoch)
        total += len(sampler)
    assert total == steps
