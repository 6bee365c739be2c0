"""Exact index math of the temporal samplers (table-driven) and their reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from vidnet.data.sampling import (
    CentreClip,
    MultiClip,
    RandomClip,
    SequentialClips,
    TemporalSampler,
    UniformSegments,
    WholeVideo,
    parse_interval,
    worker_rng,
)
from vidnet.errors import UsageError, VidnetError


class FixedStart:
    """A stand-in generator whose ``integers`` returns a chosen value, to pin the random start."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls: list[tuple] = []

    def integers(self, lo, hi=None):
        self.calls.append((lo, hi))
        return self.value

    def uniform(self, lo, hi):  # pragma: no cover - only used with speed jitter
        raise AssertionError("no speed jitter expected")


# (sampler, n_frames, T, start the rng returns, expected range of the start draw, expected indices)
RANDOM_CASES = [
    # span 4*3+1 = 13 fits in 20 frames: starts 0..7 -> integers(0, 8)
    (RandomClip(interval=4), 20, 4, 7, (0, 8), [7, 11, 15, 19]),
    (RandomClip(interval=4), 20, 4, 0, (0, 8), [0, 4, 8, 12]),
    (RandomClip(interval=1), 16, 16, 0, (0, 1), list(range(16))),
    (RandomClip(interval=2), 5, 1, 4, (0, 5), [4]),
    # too short: 10 frames < span 13; loop draws any start and wraps with the same step
    (RandomClip(interval=4), 10, 4, 5, (0, 10), [5, 9, 3, 7]),
    (RandomClip(interval=1), 3, 7, 2, (0, 3), [2, 0, 1, 2, 0, 1, 2]),
    (RandomClip(interval=1, short="loop"), 1, 4, 0, (0, 1), [0, 0, 0, 0]),
]


@pytest.mark.parametrize(("sampler", "n", "t", "start", "draw", "expected"), RANDOM_CASES)
def test_random_clip_index_math(sampler, n, t, start, draw, expected):
    rng = FixedStart(start)
    out = sampler.sample(n, t, rng)
    assert out.dtype == np.int64 and out.shape == (t,)
    assert out.tolist() == expected
    assert rng.calls == [draw]


@pytest.mark.parametrize(
    ("n", "t", "interval", "expected"),
    [
        (10, 4, 4, [0, 4, 8, 9]),  # pad: repeat the last frame, no draw at all
        (3, 5, 1, [0, 1, 2, 2, 2]),
        (13, 4, 4, None),  # fits exactly: goes through the normal path
    ],
)
def test_random_clip_pad_policy(n, t, interval, expected):
    rng = FixedStart(0)
    out = RandomClip(interval=interval, short="pad").sample(n, t, rng)
    if expected is None:
        assert out.tolist() == [0, 4, 8, 12] and rng.calls == [(0, 1)]
    else:
        assert out.tolist() == expected and rng.calls == []


def test_random_clip_start_covers_both_ends():
    starts = {int(RandomClip(interval=2).sample(11, 4, np.random.default_rng(s))[0]) for s in range(400)}
    assert starts == set(range(0, 11 - 6))  # last offset 6: starts 0..4 all reachable, nothing else


def test_random_clip_interval_list_and_range_are_drawn():
    steps = set()
    for s in range(300):
        idx = RandomClip(interval=range(1, 4)).sample(100, 5, np.random.default_rng(s))
        d = np.diff(idx)
        assert (d == d[0]).all()
        steps.add(int(d[0]))
    assert steps == {1, 2, 3}
    drawn = {int(np.diff(RandomClip(interval=[2, 8]).sample(100, 3, np.random.default_rng(s)))[0]) for s in range(50)}
    assert drawn == {2, 8}


@pytest.mark.parametrize(("speed_factor", "expected_offsets"), [(0.5, [0, 0, 1, 1, 2, 2]), (2.0, [0, 2, 4, 6, 8, 10])])
def test_random_clip_speed_jitter_keeps_order(speed_factor, expected_offsets):
    class Rng(FixedStart):
        def uniform(self, lo, hi):
            return speed_factor

    idx = RandomClip(speed=(0.5, 2.0)).sample(50, 6, Rng(3))
    assert (idx - 3).tolist() == expected_offsets


@pytest.mark.parametrize(
    ("sampler", "n", "t", "expected"),
    [
        (CentreClip(), 10, 4, [3, 4, 5, 6]),  # 7 valid starts 0..6, centre 3
        (CentreClip(), 11, 4, [4, 5, 6, 7]),  # 8 valid starts 0..7, (11-3)//2 = 4
        (CentreClip(interval=2), 20, 4, [7, 9, 11, 13]),
        (CentreClip(interval=1), 16, 16, list(range(16))),
        (CentreClip(interval=2), 5, 4, [0, 2, 4, 1]),  # loop: 6 % 5
        (CentreClip(interval=2, short="pad"), 5, 4, [0, 2, 4, 4]),
    ],
)
def test_centre_clip(sampler, n, t, expected):
    assert sampler.sample(n, t).tolist() == expected


@pytest.mark.parametrize(
    ("sampler", "n", "t", "expected"),
    [
        (SequentialClips(), 10, 3, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),  # frame 9 left over
        (SequentialClips(interval=2), 20, 3, [[0, 2, 4], [5, 7, 9], [10, 12, 14], [15, 17, 19]]),
        (SequentialClips(interval=2, max_clips=2), 20, 3, [[0, 2, 4], [5, 7, 9]]),
        (SequentialClips(), 2, 4, [[0, 1, 0, 1]]),
        (SequentialClips(short="pad"), 2, 4, [[0, 1, 1, 1]]),
    ],
)
def test_sequential_windows(sampler, n, t, expected):
    out = sampler.sample(n, t)
    assert out.dtype == np.int64
    assert out.tolist() == expected


@pytest.mark.parametrize(
    ("n", "t", "expected_test", "segments"),
    [
        (10, 4, [0, 3, 5, 8], [(0, 2), (2, 5), (5, 7), (7, 10)]),
        (8, 8, list(range(8)), [(i, i + 1) for i in range(8)]),
        (100, 5, [9, 29, 49, 69, 89], [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]),
        (3, 5, [0, 0, 1, 2, 2], None),  # fewer frames than segments: floor((k + .5) * 3 / 5)
        (1, 3, [0, 0, 0], None),
    ],
)
def test_uniform_segments(n, t, expected_test, segments):
    assert UniformSegments(random_offset=False).sample(n, t).tolist() == expected_test
    seen = np.stack([UniformSegments().sample(n, t, np.random.default_rng(s)) for s in range(200)])
    if segments is None:
        assert (seen == np.array(expected_test)).all()  # short videos are deterministic in both modes
        return
    for k, (lo, hi) in enumerate(segments):
        assert set(seen[:, k].tolist()) == set(range(lo, hi))  # uniform over exactly its own segment


MULTI_CASES = [
    # MMAction2 SampleFrames test mode, interval 1: avg = (n - T + 1) / N, start = int(avg * (k + .5))
    (MultiClip(num_clips=10), 100, 16, [4, 12, 21, 29, 38, 46, 55, 63, 72, 80]),
    (MultiClip(num_clips=3), 20, 4, [2, 8, 14]),
    (MultiClip(num_clips=1), 11, 4, [4]),
    (MultiClip(num_clips=4), 16, 16, [0, 0, 0, 0]),  # exactly one valid start
    (MultiClip(num_clips=3, interval=2), 30, 4, [4, 12, 20]),  # free = 30 - 6 = 24
    (MultiClip(num_clips=3, spacing="ends"), 20, 4, [0, 8, 16]),  # last clip ends on the last frame
    (MultiClip(num_clips=4, spacing="ends"), 10, 1, [0, 3, 6, 9]),
    (MultiClip(num_clips=1, spacing="ends"), 11, 4, [4]),
    (MultiClip(num_clips=3), 5, 8, [0, 0, 0]),  # too short: every view starts at 0
]


@pytest.mark.parametrize(("sampler", "n", "t", "starts"), MULTI_CASES)
def test_multi_clip_spacing(sampler, n, t, starts):
    out = sampler.sample(n, t)
    assert out.shape == (sampler.num_clips, t) and out.dtype == np.int64
    assert out[:, 0].tolist() == starts
    assert out.min() >= 0 and out.max() <= n - 1
    if n >= (t - 1) * sampler.interval + 1:
        assert (np.diff(out, axis=1) == sampler.interval).all()


def test_multi_clip_matches_mmaction2_formula_for_interval_1():
    # MMAction2's published formula, recomputed in floats, for many shapes. It can land one frame low where
    # (k + .5) * avg is an exact integer that the float product misses (n=107, N=10, k=7: 68.999...);
    # vidnet computes the same floor exactly, so only those cases may differ, and by exactly one frame.
    from fractions import Fraction

    for n in range(16, 300, 7):
        for n_clips in (1, 2, 3, 5, 10):
            avg = (n - 16 + 1) / n_clips
            float_starts = (np.arange(n_clips) * avg + avg / 2.0).astype(np.int64)
            exact = [Fraction((2 * k + 1) * (n - 15), 2 * n_clips) for k in range(n_clips)]
            ours = MultiClip(num_clips=n_clips).starts(n, 16)
            for k in range(n_clips):
                if exact[k].denominator == 1:
                    assert ours[k] == exact[k] and float_starts[k] in (ours[k], ours[k] - 1)
                else:
                    assert ours[k] == float_starts[k], (n, n_clips, k)


def test_multi_clip_short_video_loops_or_pads():
    assert MultiClip(num_clips=2).sample(3, 5).tolist() == [[0, 1, 2, 0, 1]] * 2
    assert MultiClip(num_clips=2, short="pad").sample(3, 5).tolist() == [[0, 1, 2, 2, 2]] * 2


def test_centre_clip_is_the_single_multi_clip():
    for n in range(1, 60):
        for t, interval in ((1, 1), (4, 1), (4, 3), (8, 2)):
            assert CentreClip(interval).sample(n, t).tolist() == MultiClip(1, interval).sample(n, t)[0].tolist()


@pytest.mark.parametrize(
    ("sampler", "n", "t", "expected"),
    [
        (WholeVideo(), 5, 1, [0, 1, 2, 3, 4]),
        (WholeVideo(interval=3), 10, 1, [0, 3, 6, 9]),
        (WholeVideo(interval=3), 9, 2, [0, 3, 6]),
        (WholeVideo(), 3, 5, [0, 1, 2, 0, 1]),  # T is a minimum: extended by looping
        (WholeVideo(short="pad"), 3, 5, [0, 1, 2, 2, 2]),
    ],
)
def test_whole_video(sampler, n, t, expected):
    assert sampler.sample(n, t).tolist() == expected


ALL = [RandomClip(interval=[1, 2, 3], speed=(0.8, 1.2)), CentreClip(2), UniformSegments(), UniformSegments(False)]


@pytest.mark.parametrize("sampler", ALL)
def test_exactly_t_in_range_in_order_for_every_length(sampler):
    assert isinstance(sampler, TemporalSampler)
    rng = np.random.default_rng(0)
    for n in range(1, 70):
        for t in (1, 2, 4, 8, 16, 32):  # multigrid changes T between calls of one sampler
            idx = sampler.sample(n, t, rng)
            assert idx.shape == (t,) and idx.dtype == np.int64
            assert idx.min() >= 0 and idx.max() <= n - 1
            if n >= 3 * t + 1:  # fits: strictly the video's time order, never a wrap
                assert (np.diff(idx) >= 0).all()


def test_same_seed_same_indices_and_no_global_state():
    sampler = RandomClip(interval=[1, 2, 4], speed=(0.5, 1.5))
    a = [sampler.sample(200, 8, worker_rng(7, 3, i)) for i in range(20)]
    np.random.seed(123)  # the legacy global state must not matter
    b = [sampler.sample(200, 8, worker_rng(7, 3, i)) for i in range(20)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    c = [sampler.sample(200, 8, worker_rng(7, 4, i)) for i in range(20)]
    assert any((x != y).any() for x, y in zip(a, c, strict=True))  # a new epoch gives new clips


def test_worker_rng_independent_of_worker_layout():
    # the same index gives the same stream no matter which worker, or how many workers, load it
    def load(num_workers: int) -> dict[int, int]:
        out = {}
        for worker in range(num_workers):
            for index in range(worker, 24, num_workers):
                out[index] = int(worker_rng(5, 1, index).integers(1 << 62))
        return out

    assert load(1) == load(2) == load(5)
    assert len(set(load(1).values())) == 24
    assert worker_rng(5, 1, worker_id=0).integers(1 << 62) != worker_rng(5, 1, 0).integers(1 << 62)


@pytest.mark.parametrize(
    "call",
    [
        lambda: worker_rng(1, 0),
        lambda: worker_rng(1, 0, 3, worker_id=1),
        lambda: worker_rng(-1, 0, 3),
        lambda: RandomClip(interval=0),
        lambda: RandomClip(interval=[]),
        lambda: RandomClip(speed=(1.5, 1.0)),
        lambda: CentreClip(short="interp"),
        lambda: MultiClip(spacing="random"),
        lambda: RandomClip().sample(10, 0, np.random.default_rng()),
        lambda: parse_interval("a-b"),
        lambda: parse_interval("4-2"),
    ],
)
def test_bad_arguments_raise_usage_errors(call):
    with pytest.raises(UsageError):
        call()


def test_empty_video_raises():
    with pytest.raises(VidnetError, match="0 frames"):
        CentreClip().sample(0, 4)


@pytest.mark.parametrize(("text", "value"), [("4", 4), ("1,2,4", (1, 2, 4)), ("2-4", range(2, 5)), (" 3 ", 3)])
def test_parse_interval(text, value):
    from vidnet.data.sampling import format_interval

    assert parse_interval(text) == value
    assert parse_interval(format_interval(value)) == value and format_interval(value) == text.strip()


def test_samplers_are_hashable_and_picklable():
    import pickle

    for s in (RandomClip(interval=[1, 2]), RandomClip(interval=range(1, 3)), MultiClip(), WholeVideo()):
        assert pickle.loads(pickle.dumps(s)) == s
        hash(s)
