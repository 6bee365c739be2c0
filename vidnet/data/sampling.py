"""Temporal samplers: which 0-based frame indices of a video make up a clip.

Every sampler is a small frozen dataclass with one method,
``sample(n_frames, num_frames, rng) -> np.ndarray`` (int64). The clip length ``num_frames`` (T) is an
argument of each call rather than a field, because multigrid training changes it from batch to batch.
Samplers are pure: the same ``(n_frames, num_frames)`` and the same generator state give the same indices,
and the deterministic ones (`CentreClip`, `SequentialClips`, test-mode `UniformSegments`, `MultiClip`,
`WholeVideo`) never touch ``rng``.

Short videos. When the span of a clip, ``(T - 1) * interval + 1`` frames, does not fit in the video, the
clip keeps its frame interval (so its time scale is unchanged) and the positions past the end are either
wrapped around to the start (``short="loop"``, the default, as MiCT-Net and MMAction2's default
``out_of_bound_opt="loop"`` do) or replaced by the last frame (``short="pad"``, a freeze at the end).
Either way the result has exactly T indices; nothing is interpolated. Indices may repeat (short videos,
speed < 1); the reader must return one frame per index, in order, and not collapse duplicates
(the original SRTG code's SQL ``IN`` query did, and then interpolated the missing frames;
alexandrosstergiou/Squeeze-and-Recursion-Temporal-Gates, ``data/video_iterator.py``).

Reproducibility. `worker_rng` derives a generator from ``(base_seed, epoch, sample index)``, so a clip and
its augmentation depend only on which sample is drawn in which epoch, never on the number of DataLoader
workers or on which worker happens to serve it (the original seeded with the wall clock and copied one
RandomState into every worker).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from vidnet.errors import UsageError, VidnetError

__all__ = [
    "ShortPolicy",
    "TemporalSampler",
    "RandomClip",
    "CentreClip",
    "SequentialClips",
    "UniformSegments",
    "MultiClip",
    "WholeVideo",
    "worker_rng",
    "parse_interval",
    "format_interval",
]

ShortPolicy = Literal["loop", "pad"]
_SHORT_POLICIES = ("loop", "pad")

# Distinct first words keep per-sample and per-worker streams apart even when index == worker_id.
_SAMPLE_STREAM = 0x5A4D
_WORKER_STREAM = 0x574B


@runtime_checkable
class TemporalSampler(Protocol):
    """What a dataset needs from a sampler."""

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices: shape [T] (or [N, T] for `MultiClip` / `SequentialClips`), int64, 0-based."""
        ...


def _check_call(n_frames: int, num_frames: int) -> None:
    if int(n_frames) != n_frames or n_frames < 1:
        raise VidnetError(f"cannot sample a clip from a video with {n_frames} frames (need at least 1)")
    if int(num_frames) != num_frames or num_frames < 1:
        raise UsageError(f"clip length must be a positive integer, got num_frames={num_frames}")


def _check_short(short: str) -> None:
    if short not in _SHORT_POLICIES:
        raise UsageError(f"short={short!r} is not a short-video policy; use one of {', '.join(_SHORT_POLICIES)}")


def _check_interval(interval: int, name: str = "interval") -> int:
    if isinstance(interval, bool) or int(interval) != interval or interval < 1:
        raise UsageError(f"{name} must be a positive integer frame step, got {interval!r}")
    return int(interval)


def _fit(positions: np.ndarray, n_frames: int, short: ShortPolicy) -> np.ndarray:
    """Bring positions past the last frame back into the video by looping or by repeating the last frame."""
    if short == "loop":
        return np.mod(positions, n_frames)
    return np.minimum(positions, n_frames - 1)


def _windows(starts: np.ndarray, offsets: np.ndarray, n_frames: int, short: ShortPolicy) -> np.ndarray:
    return _fit(starts[:, None] + offsets[None, :], n_frames, short).astype(np.int64)


@dataclass(frozen=True)
class RandomClip:
    """Training clip: T frames ``interval`` apart starting at a uniformly random frame.

    Args:
        interval: Frame step. An int, or a sequence of ints (a list, a tuple or a ``range``) from which one
            value is drawn uniformly per clip; ``range(2, 5)`` draws 2, 3 or 4. See `parse_interval`.
        speed: Speed jitter ``(lo, hi)``: the step is multiplied by a factor drawn from U(lo, hi) per clip
            and the positions ``floor(i * step)`` are used, so speed < 1 repeats frames (slow motion) and
            speed > 1 skips more. ``(1.0, 1.0)`` (default) disables it and draws nothing.
        short: Policy when the span does not fit: ``"loop"`` starts at a random frame and wraps around,
            ``"pad"`` starts at frame 0 and repeats the last frame.

    The start is uniform over every position at which the whole span fits (both ends included), so every
    frame of a long video can appear.
    """

    interval: int | Sequence[int] = 1
    speed: tuple[float, float] = (1.0, 1.0)
    short: ShortPolicy = "loop"
    _choices: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.interval, Sequence) and not isinstance(self.interval, str):
            choices = tuple(_check_interval(v) for v in self.interval)
            if not choices:
                raise UsageError("interval: an empty list of frame steps was given")
            if isinstance(self.interval, list):
                object.__setattr__(self, "interval", choices)  # keeps the frozen instance hashable
        else:
            choices = (_check_interval(self.interval),)  # type: ignore[arg-type]
        object.__setattr__(self, "_choices", choices)
        lo, hi = (float(v) for v in self.speed)
        if not (0 < lo <= hi):
            raise UsageError(f"speed must be (lo, hi) with 0 < lo <= hi, got {self.speed!r}")
        object.__setattr__(self, "speed", (lo, hi))
        _check_short(self.short)

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Indices [T] of one random clip."""
        _check_call(n_frames, num_frames)
        choices = self._choices
        step: float = choices[0] if len(choices) == 1 else choices[int(rng.integers(len(choices)))]
        lo, hi = self.speed
        if (lo, hi) != (1.0, 1.0):
            step = step * float(rng.uniform(lo, hi))
        offsets = np.floor(np.arange(num_frames, dtype=np.float64) * step).astype(np.int64)
        last = int(offsets[-1])
        if last <= n_frames - 1:
            start = int(rng.integers(0, n_frames - last))
            return start + offsets
        if self.short == "loop":
            start = int(rng.integers(0, n_frames))
            return _fit(start + offsets, n_frames, "loop")
        return _fit(offsets, n_frames, "pad")


@dataclass(frozen=True)
class CentreClip:
    """Validation clip: T frames ``interval`` apart, centred in the video (deterministic).

    The start is ``(n_frames - last) // 2`` with ``last = (T - 1) * interval``, the same position as
    ``MultiClip(num_clips=1)``. A span longer than the video starts at frame 0 and is fitted by ``short``.
    """

    interval: int = 1
    short: ShortPolicy = "loop"

    def __post_init__(self) -> None:
        _check_interval(self.interval)
        _check_short(self.short)

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Indices [T] of the centred clip; ``rng`` is ignored."""
        _check_call(n_frames, num_frames)
        offsets = np.arange(num_frames, dtype=np.int64) * self.interval
        last = int(offsets[-1])
        start = (n_frames - last) // 2 if last <= n_frames - 1 else 0
        return _fit(start + offsets, n_frames, self.short).astype(np.int64)


@dataclass(frozen=True)
class SequentialClips:
    """Every non-overlapping window of the video, in order (deterministic).

    A window spans ``(T - 1) * interval + 1`` frames and windows start at 0, span, 2*span, ...; frames after
    the last whole window are not used. A video shorter than one window gives one window from frame 0,
    fitted by ``short``. Returns an array [K, T] with K = max(1, n_frames // span), capped by ``max_clips``.
    """

    interval: int = 1
    short: ShortPolicy = "loop"
    max_clips: int | None = None

    def __post_init__(self) -> None:
        _check_interval(self.interval)
        _check_short(self.short)
        if self.max_clips is not None:
            _check_interval(self.max_clips, "max_clips")

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Indices [K, T] of the consecutive windows; ``rng`` is ignored."""
        _check_call(n_frames, num_frames)
        offsets = np.arange(num_frames, dtype=np.int64) * self.interval
        span = int(offsets[-1]) + 1
        count = max(1, n_frames // span)
        if self.max_clips is not None:
            count = min(count, self.max_clips)
        return _windows(np.arange(count, dtype=np.int64) * span, offsets, n_frames, self.short)


@dataclass(frozen=True)
class UniformSegments:
    """TSN-style sampling: the video is cut into T equal segments and one frame is taken from each.

    Segment k holds the frames ``floor(k * n / T) <= i < floor((k + 1) * n / T)``. With ``random_offset``
    (training) the frame is uniform within its segment; without it (testing) it is the segment's middle
    frame ``(first + last) // 2``. A video with fewer than T frames has empty segments; then frame
    ``floor((k + 0.5) * n / T)`` is used for every k, which repeats frames in time order (deterministic in
    both modes).

    Args:
        random_offset: Draw the frame within each segment (train) instead of taking its middle (test).
    """

    random_offset: bool = True

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Indices [T], one per segment."""
        _check_call(n_frames, num_frames)
        k = np.arange(num_frames, dtype=np.int64)
        if n_frames < num_frames:
            return ((2 * k + 1) * n_frames) // (2 * num_frames)
        first = (k * n_frames) // num_frames
        end = ((k + 1) * n_frames) // num_frames  # exclusive; end > first because n_frames >= T
        if not self.random_offset:
            return (first + end - 1) // 2
        if rng is None:
            raise UsageError("UniformSegments(random_offset=True) needs an rng")
        return rng.integers(first, end).astype(np.int64)


@dataclass(frozen=True)
class MultiClip:
    """Dense multi-view testing: N clips of T frames spread evenly over the video (deterministic).

    With ``last = (T - 1) * interval`` there are ``free = n_frames - last`` valid start frames.

    * ``spacing="bins"`` (default): the valid starts are cut into N equal bins and each clip starts at its
      bin's centre, ``floor((k + 0.5) * free / N)``. This is MMAction2's ``SampleFrames`` test mode (the
      10-clip protocol); for interval 1 the indices are identical. MMAction2 reserves ``T * interval``
      frames per clip where we reserve the true span ``(T - 1) * interval + 1``, so for interval > 1 our
      clips may start up to ``interval - 1`` frames later. The floor is computed in exact integer
      arithmetic; MMAction2's float product lands one frame lower where the bin centre is an exact
      integer (n=107, T=16, N=10, k=7: 68.999... -> 68 where the exact start is 69).
    * ``spacing="ends"``: the first clip starts at frame 0 and the last ends at the last frame,
      ``floor(k * (free - 1) / (N - 1))`` (PySlowFast's offset sampling, without its rounding of the
      stride); N = 1 gives the centre clip.

    A video shorter than one span gives N copies of the clip starting at frame 0, fitted by ``short``
    (as MMAction2 does). Returns [N, T].
    """

    num_clips: int = 10
    interval: int = 1
    spacing: Literal["bins", "ends"] = "bins"
    short: ShortPolicy = "loop"

    def __post_init__(self) -> None:
        _check_interval(self.num_clips, "num_clips")
        _check_interval(self.interval)
        _check_short(self.short)
        if self.spacing not in ("bins", "ends"):
            raise UsageError(f"spacing={self.spacing!r} is not a clip spacing; use 'bins' or 'ends'")

    def starts(self, n_frames: int, num_frames: int) -> np.ndarray:
        """First frame of each of the N clips, before short-video fitting."""
        _check_call(n_frames, num_frames)
        n_clips = self.num_clips
        free = n_frames - (num_frames - 1) * self.interval
        k = np.arange(n_clips, dtype=np.int64)
        if free < 1:
            return np.zeros(n_clips, dtype=np.int64)
        if self.spacing == "bins" or n_clips == 1:
            # Integer arithmetic: floor((2k + 1) * free / 2N) is exact where float bins can round down.
            return ((2 * k + 1) * free) // (2 * n_clips)
        return (k * (free - 1)) // (n_clips - 1)

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Indices [N, T]; ``rng`` is ignored."""
        offsets = np.arange(num_frames, dtype=np.int64) * self.interval
        return _windows(self.starts(n_frames, num_frames), offsets, n_frames, self.short)


@dataclass(frozen=True)
class WholeVideo:
    """Every ``interval``-th frame of the whole video, for full-length evaluation (deterministic).

    Unlike the other samplers the length follows the video: ``ceil(n_frames / interval)`` indices. The
    clip length T is a minimum: a video shorter than that is extended to exactly T by ``short`` (a model
    needs a minimum temporal size), keeping the interval.
    """

    interval: int = 1
    short: ShortPolicy = "loop"

    def __post_init__(self) -> None:
        _check_interval(self.interval)
        _check_short(self.short)

    def sample(self, n_frames: int, num_frames: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
        """Indices [max(ceil(n / interval), T)]; ``rng`` is ignored."""
        _check_call(n_frames, num_frames)
        length = max(math.ceil(n_frames / self.interval), num_frames)
        return _fit(np.arange(length, dtype=np.int64) * self.interval, n_frames, self.short).astype(np.int64)


def worker_rng(
    base_seed: int, epoch: int, index: int | None = None, *, worker_id: int | None = None
) -> np.random.Generator:
    """A numpy generator derived from the base seed, the epoch and either a sample index or a worker id.

    Give ``index`` (the dataset index being loaded) for everything that decides a sample: the temporal
    sampler, the augmentation parameters, a deterministic replacement of a bad video. That stream depends
    only on ``(base_seed, epoch, index)``, so the same seed gives the same clips whatever the number of
    DataLoader workers and whichever worker loads the sample. Give ``worker_id`` instead for per-worker
    state that does not decide samples (for example seeding ``torch`` or ``random`` in a
    ``worker_init_fn``); that stream does change with the worker layout, so never use it for sampling.

    Args:
        base_seed: The run's seed (non-negative).
        epoch: The epoch being loaded (non-negative); a new epoch gives new clips.
        index: Dataset index of the sample.
        worker_id: DataLoader worker id (``torch.utils.data.get_worker_info().id``).

    Returns:
        A fresh ``np.random.Generator`` (PCG64) seeded through ``np.random.SeedSequence``, whose hashing keeps
        the streams of neighbouring indices and epochs statistically independent.
    """
    if (index is None) == (worker_id is None):
        raise UsageError("worker_rng needs exactly one of index (per-sample stream) or worker_id (per-worker)")
    tag, key = (_SAMPLE_STREAM, index) if index is not None else (_WORKER_STREAM, worker_id)
    values = {"base_seed": base_seed, "epoch": epoch, "index" if index is not None else "worker_id": key}
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise UsageError(f"worker_rng: {name} must be a non-negative integer, got {value!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([tag, int(base_seed), int(epoch), int(key)])))


def format_interval(interval: int | Sequence[int]) -> str:
    """The inverse of `parse_interval`: 2, (1, 3) and range(2, 5) are written "2", "1,3" and "2-4"."""
    if isinstance(interval, range):
        return f"{interval.start}-{interval.stop - 1}"
    if isinstance(interval, Sequence):
        return ",".join(map(str, interval))
    return str(interval)


def parse_interval(text: str) -> int | tuple[int, ...] | range:
    """Parse a frame-interval option: ``"4"`` -> 4, ``"1,2,4"`` -> (1, 2, 4), ``"2-4"`` -> range(2, 5).

    A range is inclusive of both ends, as a user writes it; the result can be passed to `RandomClip`.
    """
    raw = text.strip()
    try:
        if "," in raw:
            return tuple(_check_interval(int(part)) for part in raw.split(","))
        if "-" in raw:
            lo_text, hi_text = raw.split("-", 1)
            lo, hi = _check_interval(int(lo_text)), _check_interval(int(hi_text))
            if lo > hi:
                raise UsageError(f"frame interval range {text!r} has lo > hi")
            return range(lo, hi + 1)
        return _check_interval(int(raw))
    except ValueError:
        raise UsageError(f"frame interval {text!r} is not an int, a comma list (1,2,4) or a range (2-4)") from None
