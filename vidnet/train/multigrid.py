"""Batch sampler for one DataLoader whose batches change shape: multigrid keys ``(index, T, H, W)``.

The original trainer kept up to three DataLoaders alive (one per short-cycle shape) and rebuilt them at every
long-cycle change; PySlowFast rebuilds its loaders per long-cycle stage. Here the shape travels with every
key instead, so a single DataLoader (and one set of workers) serves the whole run: the dataset reads each
key's clip length and crop. The same sampler with a constant shape is the plain training path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from vidnet.train.schedules import Shape

__all__ = ["MultigridBatchSampler", "SpanKeepingClip", "Key"]

Key = tuple[int, int, int, int]


class MultigridBatchSampler(Sampler[list[Key]]):
    """Yields lists of ``(index, frames, height, width)`` keys, the list length being the scheduled batch.

    Args:
        num_samples: Size of the dataset.
        shape_at: ``(epoch, iteration) -> Shape``, e.g. `MultigridSchedule.shape`.
        sampler: Index sampler giving this process's order for the epoch, e.g. a
            ``DistributedSampler`` (its ``set_epoch`` is called by ours). None: a shuffled permutation of
            ``range(num_samples)`` seeded by ``(seed, epoch)``, or the identity order if ``shuffle`` is false.
        seed: Seed of the default shuffle.
        shuffle: Shuffle (default sampler only).
        drop_last: Drop the final incomplete batch (training); otherwise it is yielded shorter.

    Every process of a distributed run iterates the same number of indices (DistributedSampler pads), and
    the shape depends only on (epoch, iteration), so all ranks see identical shapes at every step.
    ``start_iteration`` (set by a resume in the middle of an epoch) skips the batches already trained.
    """

    def __init__(
        self,
        num_samples: int,
        shape_at: Callable[[int, int], Shape],
        *,
        sampler: Sampler[int] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        self.num_samples = int(num_samples)
        self.shape_at = shape_at
        self.sampler = sampler
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.start_iteration = 0

    def set_epoch(self, epoch: int, start_iteration: int = 0) -> None:
        """Select the epoch (shuffle order and shapes) and the first iteration to yield."""
        self.epoch = int(epoch)
        self.start_iteration = int(start_iteration)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _order(self) -> list[int]:
        if self.sampler is not None:
            return list(self.sampler)
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def _count(self) -> int:
        return len(self.sampler) if self.sampler is not None else self.num_samples  # type: ignore[arg-type]

    def shapes(self) -> Iterator[tuple[int, int, Shape]]:
        """``(start, stop, shape)`` of every batch of the epoch, from iteration 0 (no data touched)."""
        n, pos, it = self._count(), 0, 0
        while pos < n:
            shape = self.shape_at(self.epoch, it)
            stop = pos + shape.batch
            if stop > n:
                if self.drop_last:
                    return
                stop = n
            yield pos, stop, shape
            pos, it = stop, it + 1

    def __iter__(self) -> Iterator[list[Key]]:
        order = self._order()
        for it, (start, stop, shape) in enumerate(self.shapes()):
            if it < self.start_iteration:
                continue
            yield [(i, shape.frames, shape.height, shape.width) for i in order[start:stop]]

    def __len__(self) -> int:
        """Batches this epoch from iteration 0 (``start_iteration`` does not change it)."""
        return sum(1 for _ in self.shapes())


@dataclass(frozen=True)
class SpanKeepingClip:
    """Temporal sampler wrapper for the long cycle: fewer frames, same time span.

    The long cycle asks for T/4 or T/2 frames; like PySlowFast's ``LONG_CYCLE_SAMPLING_RATE`` the frame step is
    multiplied by ``base_frames / T`` so a short clip still covers the motion of a full one.

    Args:
        sampler: A `vidnet.data.sampling.RandomClip` (its ``interval``, ``speed`` and ``short`` are kept).
        base_frames: The base clip length T.
    """

    sampler: Any
    base_frames: int

    def sample(self, n_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Indices [num_frames] spanning what ``base_frames`` frames would span."""
        factor = max(1, self.base_frames // num_frames)
        if factor == 1:
            return self.sampler.sample(n_frames, num_frames, rng)
        return _scaled(self.sampler, factor).sample(n_frames, num_frames, rng)


@functools.lru_cache(maxsize=16)
def _scaled(sampler: Any, factor: int) -> Any:
    interval = sampler.interval
    scaled = tuple(i * factor for i in interval) if isinstance(interval, tuple) else interval * factor
    return dataclasses.replace(sampler, interval=scaled)
