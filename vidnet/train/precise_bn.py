"""Precise BatchNorm statistics: recompute every BatchNorm's running mean and variance over N training batches.

During training the running statistics are an exponential average (momentum 0.1) of batch statistics taken
while the weights kept changing, so they lag behind the weights; after a short run (tens of steps) or a
multigrid run (whose batches mostly have other shapes than validation's) they describe a network that no
longer exists, and evaluation-mode outputs collapse (every validation clip gets the same class). Precise BN
(Wu and Johnson, "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576; PySlowFast's ``BN.USE_PRECISE_STATS``
with ``BN.NUM_BATCHES_PRECISE`` batches, through fvcore's ``update_bn_stats``) freezes the weights, runs N
training batches forward in training mode and sets the running statistics to the average of their batch
means and batch variances. PyTorch's BatchNorm computes exactly that cumulative average when its momentum
is None, so each layer is reset, run with momentum None, and given its momentum back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["bn_layers", "update_bn_stats", "resolve_precise_bn", "AUTO_BATCHES", "SHORT_RUN_STEPS"]

AUTO_BATCHES = 200
"""Batches of ``--precise-bn auto`` where it is on (PySlowFast's ``BN.NUM_BATCHES_PRECISE``)."""
SHORT_RUN_STEPS = 100
"""Below this many optimizer steps in the whole run the running statistics are stale: ``auto`` turns precise BN
on, and a run without it says so in the log."""


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (1D/2D/3D, Sync and sub-batch BN)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None]


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Iterable[Any], num_batches: int,
                    forward: Callable[[nn.Module, Any], Any] | None = None) -> int:
    """Set every BatchNorm's running statistics to the mean over ``num_batches`` batches of their batch statistics.

    Args:
        model: The model (unwrapped: no DDP gradient hooks are needed, nothing is backpropagated).
        batches: Training batches; ``forward(model, batch)`` runs one (default: ``model(batch)``).
        num_batches: Batches to use (fewer if ``batches`` ends first).
        forward: How to run a batch through the model.

    Returns:
        The number of batches used (0 leaves the statistics unchanged).

    The weights, the training mode and the global random streams (dropout) are left as they were.
    """
    layers = bn_layers(model)
    if not layers or num_batches <= 0:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the forward passes below
    was_training = model.training
    model.train()
    used = 0
    try:
        with torch.random.fork_rng(devices=[]):
            for batch in batches:
                if used >= num_batches:
                    break
                model(batch) if forward is None else forward(model, batch)
                used += 1
    finally:
        model.train(was_training)
        for m, (momentum, mean, var, tracked) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
            if used == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
    return used


def resolve_precise_bn(setting: str, *, multigrid: bool, total_steps: int) -> int:
    """Batches of ``--precise-bn`` for a run: a number, ``off`` (0), or ``auto``: `AUTO_BATCHES` with multigrid
    or when the run has fewer than `SHORT_RUN_STEPS` optimizer steps, else 0."""
    if setting == "off":
        return 0
    if setting == "auto":
        return AUTO_BATCHES if multigrid or total_steps < SHORT_RUN_STEPS else 0
    return int(setting)
