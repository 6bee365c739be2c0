"""Learning-rate and multigrid schedules as pure functions of the training position.

Nothing here holds state or touches a model: the loop asks ``lr_at(progress)`` and
``MultigridSchedule.shape(epoch, iteration)`` and gets numbers back, so every value can be tabulated and
tested on its own. ``progress`` is measured in epochs (``epoch + iteration / iterations_in_epoch``) because
multigrid epochs have a varying number of iterations.

Multigrid follows Wu et al., "A Multigrid Method for Efficiently Training Video Models" (arXiv 1912.00998):

* **Long cycle**: each learning-rate stage of the base schedule is split into four stages of shape
  (8B, T/4, S/sqrt2), (4B, T/2, S/sqrt2), (2B, T/2, S), (B, T, S), with epochs in proportion to the batch
  so that each long-cycle stage takes about the same number of iterations. The learning rate is scaled
  with the long-cycle batch (linear scaling rule), optionally capped (``lr_scale_max``).
* **Short cycle**: inside a long-cycle stage of shape (b, t, s) the iterations cycle through
  (4b, t, s/2), (2b, t, s/sqrt2), (b, t, s); the learning rate is not changed by the short cycle.
  The factors are applied to the current long-cycle shape, so they stay [4, 2, 1] in every stage
  (PySlowFast computes them from the current crop and collapses them to [2, 1, 1] at S/sqrt2).
* **Fine-tune**: the last stage of the base schedule (after the last learning-rate step) runs at the base
  shape without short cycles, shortened by the same iteration saving as the rest.
* **Epochs x1.5**: the stage lengths are scaled so the multigrid run lasts ``epoch_factor`` times the base
  schedule's epochs (the paper's recipe; the iterations are still several times fewer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vidnet.errors import UsageError

__all__ = [
    "LONG_CYCLE",
    "SHORT_CYCLE",
    "Shape",
    "Stage",
    "MultigridSchedule",
    "lr_at",
    "stage_end_epochs",
    "even",
]

#: Long-cycle stages as (batch factor, frames factor, side factor), slowest-to-fastest order reversed:
#: the first stage is the coarsest grid.
LONG_CYCLE: tuple[tuple[int, float, float], ...] = (
    (8, 0.25, 1 / math.sqrt(2)),
    (4, 0.5, 1 / math.sqrt(2)),
    (2, 0.5, 1.0),
    (1, 1.0, 1.0),
)
#: Short-cycle phases as (batch factor, side factor) applied to the current long-cycle shape.
SHORT_CYCLE: tuple[tuple[int, float], ...] = ((4, 0.5), (2, 1 / math.sqrt(2)), (1, 1.0))

ScheduleName = Literal["multistep", "cosine"]


def even(x: float) -> int:
    """Round a side length to the nearest even number (at least 2), so strided layers halve it cleanly."""
    return max(2, 2 * round(x / 2))


@dataclass(frozen=True)
class Shape:
    """The mini-batch of one iteration: per-process batch, clip length and crop, and the LR multiplier."""

    batch: int
    frames: int
    height: int
    width: int
    lr_scale: float = 1.0

    @property
    def clip(self) -> tuple[int, int, int]:
        """(frames, height, width)."""
        return (self.frames, self.height, self.width)


@dataclass(frozen=True)
class Stage:
    """One multigrid stage: epochs ``[start, end)`` at one long-cycle shape and one learning-rate stage."""

    lr_stage: int
    """Index of the base schedule's learning-rate stage (0 before the first step)."""
    shape: Shape
    """Long-cycle shape (before the short cycle), with ``lr_scale`` = its batch factor (or the cap)."""
    start: int
    end: int
    short_cycle: bool
    """Whether the short cycle runs inside this stage (never in the fine-tune stage)."""


def lr_at(
    progress: float,
    *,
    base_lr: float,
    schedule: ScheduleName = "multistep",
    steps: Sequence[float] = (),
    factor: float = 0.1,
    end_epoch: float,
    warmup_epochs: float = 0.0,
    warmup_start: float = 0.0,
    min_lr: float = 0.0,
) -> float:
    """The learning rate at ``progress`` epochs into training.

    Args:
        progress: Position in epochs; fractional inside an epoch (``epoch + i / iterations``).
        base_lr: Peak learning rate (after warm-up).
        schedule: ``multistep`` multiplies by ``factor`` at each epoch of ``steps``; ``cosine`` decays from
            ``base_lr`` to ``min_lr`` over ``[warmup_epochs, end_epoch]``.
        steps: Epochs of the multistep decays (ascending).
        factor: Multistep decay factor.
        end_epoch: Last epoch (exclusive) of training; the cosine reaches ``min_lr`` there.
        warmup_epochs: Linear warm-up length in epochs, from ``warmup_start * base_lr`` to the schedule's
            value at the end of the warm-up.
        warmup_start: Warm-up starting fraction of the learning rate.
        min_lr: Floor of the cosine schedule.

    Returns:
        The learning rate (before any multigrid scaling).
    """
    def plain(p: float) -> float:
        if schedule == "multistep":
            return base_lr * factor ** sum(1 for s in steps if p >= s)
        if schedule == "cosine":
            span = max(end_epoch - warmup_epochs, 1e-12)
            t = min(max((p - warmup_epochs) / span, 0.0), 1.0)
            return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))
        raise UsageError(f"unknown learning-rate schedule {schedule!r}; use multistep or cosine")

    if warmup_epochs > 0 and progress < warmup_epochs:
        target = plain(warmup_epochs)
        start = warmup_start * base_lr
        return start + (target - start) * progress / warmup_epochs
    return plain(progress)


def stage_end_epochs(
    step_epochs: Sequence[float], end_epoch: float, avg_batches: Sequence[float], epoch_factor: float
) -> list[tuple[int, int, int]]:
    """Lengths of the multigrid stages, as ``(lr_stage, long_stage, end_epoch)``; the fine-tune stage last.

    Within a learning-rate stage of ``E`` base epochs, long-cycle stage ``k`` gets ``E * a_k / sum(a)`` epochs,
    where ``a_k`` is its mean batch factor over the short cycle: every long-cycle stage then takes the same
    number of iterations. The fine-tune stage gets the base schedule's last stage shortened by the overall
    iteration saving. All lengths are then scaled so the total is ``epoch_factor * end_epoch``, and the
    cumulative ends rounded to whole epochs. (This is also the arithmetic of PySlowFast's
    ``get_long_cycle_schedule``, which the tests check against its published Kinetics schedule.)

    Args:
        step_epochs: Learning-rate stage boundaries of the base schedule, starting with 0.
        end_epoch: Base schedule's last epoch.
        avg_batches: Mean batch factor of each long-cycle stage, coarsest first; the last one is the base.
        epoch_factor: Total multigrid epochs over base epochs.
    """
    raw: list[tuple[int, int, float]] = []
    iterations = 0.0
    total_avg = sum(avg_batches)
    for lr_stage in range(len(step_epochs) - 1):
        span = step_epochs[lr_stage + 1] - step_epochs[lr_stage]
        for k, a in enumerate(avg_batches):
            epochs = span * a / total_avg
            iterations += epochs / a
            raw.append((lr_stage, k, epochs))
    saving = step_epochs[-1] / iterations
    raw.append((len(step_epochs) - 1, len(avg_batches) - 1, (end_epoch - step_epochs[-1]) / saving * avg_batches[-1]))
    scale = end_epoch * epoch_factor / sum(r[2] for r in raw)
    out, total = [], 0.0
    for lr_stage, k, epochs in raw:
        total += epochs * scale
        out.append((lr_stage, k, int(round(total))))
    return out


@dataclass(frozen=True)
class MultigridSchedule:
    """Mini-batch shape per (epoch, iteration), and the learning-rate stage boundaries it implies.

    Build it with `MultigridSchedule.create`; without long cycles the epochs are the base ones, and
    without either cycle every iteration has the base shape (the plain training path uses this too).
    """

    base: Shape
    stages: tuple[Stage, ...]
    end_epoch: int
    lr_steps: tuple[int, ...]
    """Learning-rate step epochs in this schedule's epochs (equal to the base steps without long cycles)."""

    @classmethod
    def create(
        cls,
        *,
        batch: int,
        frames: int,
        size: tuple[int, int],
        lr_steps: Sequence[int],
        end_epoch: int,
        long_cycle: bool = False,
        short_cycle: bool = False,
        epoch_factor: float = 1.5,
        lr_scale_max: float | None = None,
        min_frames: int = 1,
    ) -> MultigridSchedule:
        """Plan a run.

        Args:
            batch: Base per-process batch size B.
            frames: Base clip length T.
            size: Base crop (height, width) S.
            lr_steps: Base schedule's learning-rate step epochs.
            end_epoch: Base schedule's number of epochs.
            long_cycle: Use the long cycle (needs at least one learning-rate step).
            short_cycle: Use the short cycle.
            epoch_factor: Multigrid epochs over base epochs (long cycle only).
            lr_scale_max: Cap of the long cycle's learning-rate multiplier (linear scaling gives x8, x4, x2);
                None keeps the paper's linear rule. The batch shapes are not changed.
            min_frames: Leave out the long-cycle stages whose clips would be shorter than this (1 keeps all four;
                with T = 8, 4 drops the T/4 = 2-frame stage). The base stage is always kept.
        """
        h, w = size
        base = Shape(batch, frames, h, w)
        steps = tuple(int(s) for s in lr_steps)
        if not long_cycle:
            return cls(base, (Stage(0, base, 0, end_epoch, short_cycle),), end_epoch, steps)
        if not steps or steps[0] <= 0 or steps[-1] >= end_epoch or list(steps) != sorted(steps):
            raise UsageError(
                "--long-cycles needs --lr-steps ascending within (0, --end-epoch): the long cycle repeats once per "
                f"learning-rate stage and the last stage becomes the fine-tune at the base shape (got {list(steps)} "
                f"with --end-epoch {end_epoch})"
            )
        cycle = [(b, t, s) for b, t, s in LONG_CYCLE if b == 1 or max(1, round(frames * t)) >= min_frames]
        longs = [
            Shape(batch * b, max(1, round(frames * t)), even(h * s), even(w * s),
                  lr_scale=float(b) if lr_scale_max is None else min(float(b), lr_scale_max))
            for b, t, s in cycle
        ]
        short_mean = sum(b for b, _ in SHORT_CYCLE) / len(SHORT_CYCLE) if short_cycle else 1.0
        avg = [b * short_mean for b, _, _ in cycle]
        ends = stage_end_epochs((0, *steps), end_epoch, avg, epoch_factor)
        stages, start = [], 0
        for i, (lr_stage, k, end) in enumerate(ends):
            final = i == len(ends) - 1
            end = max(end, start + 1) if final else end  # the fine-tune stage is never rounded away
            if end > start:
                stages.append(Stage(lr_stage, base if final else longs[k], start, end, short_cycle and not final))
            start = max(start, end)
        new_steps = tuple(s.start for prev, s in zip(stages, stages[1:], strict=False) if s.lr_stage != prev.lr_stage)
        return cls(base, tuple(stages), stages[-1].end, new_steps)

    def stage(self, epoch: int) -> Stage:
        """The stage holding ``epoch`` (the last stage for any later epoch)."""
        for s in self.stages:
            if epoch < s.end:
                return s
        return self.stages[-1]

    def shape(self, epoch: int, iteration: int) -> Shape:
        """Shape of iteration ``iteration`` (0-based, within the epoch) of epoch ``epoch``."""
        st = self.stage(epoch)
        long = st.shape
        if not st.short_cycle:
            return long
        b, f = SHORT_CYCLE[iteration % len(SHORT_CYCLE)]
        if f == 1.0:
            return long
        return Shape(long.batch * b, long.frames, even(long.height * f), even(long.width * f), long.lr_scale)

    def all_shapes(self) -> list[Shape]:
        """Every distinct mini-batch shape of the run (each stage's long-cycle shape and its short-cycle ones)."""
        shapes = {self.shape(s.start, i) for s in self.stages for i in range(len(SHORT_CYCLE) if s.short_cycle else 1)}
        return sorted(shapes, key=lambda sh: (sh.frames, sh.height, sh.width, sh.batch))

    def table(self) -> list[str]:
        """One line per stage, for the log."""
        lines = []
        for s in self.stages:
            sh = s.shape
            lines.append(f"epochs {s.start:>4d}-{s.end - 1:<4d} lr stage {s.lr_stage}: batch {sh.batch} x {sh.frames} "
                         f"frames x {sh.height}x{sh.width}, lr x{sh.lr_scale:g}" + (" + short cycle" if s.short_cycle
                                                                                    else ""))
        return lines
