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
from torch import nn
from torch.utils.data import Sampler

from vidnet.errors import UsageError
from vidnet.train.schedules import Shape

__all__ = ["MultigridBatchSampler", "SpanKeepingClip", "Key", "check_shapes"]

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


def check_shapes(model: nn.Module, shapes: list[Shape], *, world_size: int = 1, multigrid: bool = False) -> None:
    """Check every batch shape of a run against the model before the first step, without computing anything.

    The model runs once per distinct clip shape on fake tensors (shapes only, no memory or arithmetic), and
    every BatchNorm's input is measured: in training, a BatchNorm needs more than one value per channel in
    each group it normalises (the batch; a `SubBatchNorm3d`'s groups, the last one possibly smaller; the
    batch of every process for SyncBatchNorm). Multigrid's short cycle shrinks the crop, so with a small
    batch a deep layer can be left with one value per channel, which PyTorch reports as a raw traceback at
    that step.

    Raises:
        UsageError: a shape the model cannot train at, naming the shape, the layer and what to change.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    norms = {m: name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if not norms:
        return
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    seen: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, inputs, _: seen.__setitem__(m, tuple(inputs[0].shape)))
             for m in norms]
    was_training = model.training
    model.eval()  # eval: running statistics are neither checked nor updated by the fake pass
    try:
        for clip in sorted({(s.frames, s.height, s.width) for s in shapes}):
            seen.clear()
            try:
                with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
                    model(torch.empty(1, 3, *clip, device=device))
            except Exception:  # noqa: BLE001 - a model the fake pass cannot run is checked by its first real step
                continue
            for shape in (s for s in shapes if (s.frames, s.height, s.width) == clip):
                for m, size in seen.items():
                    group = _smallest_group(m, shape.batch, world_size)
                    values = group * int(np.prod(size[2:]))
                    if values <= 1:
                        what = "multigrid shape" if multigrid else "batch shape"
                        raise UsageError(
                            f"{what} {shape.batch} x {shape.frames} frames x {shape.height}x{shape.width}: BatchNorm "
                            f"{norms[m]!r} would see {values} value per channel (groups of {group} clip(s) x "
                            f"{size[1]} channels x {'x'.join(map(str, size[2:]))}) and cannot train; use a larger "
                            "--batch-size or "
                            f"--clip-size" + (", --bn-sub-batch 2 or more, or no --short-cycles (its crops are "
                                              "the smallest)" if multigrid else ""))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def _smallest_group(norm: nn.Module, batch: int, world_size: int) -> int:
    """Clips in the smallest group a BatchNorm layer normalises together at a per-process ``batch``."""
    if isinstance(norm, nn.SyncBatchNorm):
        return batch * world_size
    k = getattr(norm, "sub_batch", None)  # SubBatchNorm3d
    if k is None or batch <= k:
        return batch
    return batch % k or k
