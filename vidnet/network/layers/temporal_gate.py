"""Temporal gate of SRTG: fuse recurrent features only where they are cycle-consistent with the features.

Stergiou & Poppe, "Learn to cycle: Time-consistent feature discovery for action recognition",
arXiv:2006.08247.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["cycle_consistent", "TemporalCycleGate"]


def cycle_consistent(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample temporal consistency of two frame sequences by nearest-frame matching.

    For every frame of ``a`` the nearest frame of ``b`` (squared L2 over channels) is found; ``a -> b`` is
    consistent when frame ``t`` of ``a`` matches frame ``t`` of ``b`` for every ``t``. ``b -> a`` is checked
    the same way, and a sample counts as consistent when either direction is (logical OR), as the SRTG
    paper and the original's later test code describe.

    The distances are computed in float64 so that AMP's half-precision activations cannot overflow them.
    (The original's unwired code also rounded the inputs through float16 and applied an "exp(d)/exp(sum d)"
    normalisation; neither changes a nearest-frame choice except on exact ties, so both are left out.)

    Args:
        a: features ``B x C x T``.
        b: features ``B x C x T`` (the same shape).

    Returns:
        Boolean tensor ``B``: True where the sample is consistent.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"cycle_consistent needs two B x C x T tensors of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    with torch.no_grad():
        fa = a.detach().transpose(1, 2).to(torch.float64)  # B x T x C
        fb = b.detach().transpose(1, 2).to(torch.float64)
        dist = (fa[:, :, None, :] - fb[:, None, :, :]).pow(2).sum(-1)  # B x T(a) x T(b)
        frames = torch.arange(dist.shape[1], device=dist.device)
        a_to_b = (dist.argmin(dim=2) == frames).all(dim=1)
        b_to_a = (dist.argmin(dim=1) == frames).all(dim=1)
    return a_to_b | b_to_a


class TemporalCycleGate(nn.Module):
    """The temporal gate as a layer: ``gate(features, recurrent) -> B`` boolean mask (no parameters).

    The decision is discrete, so no gradient flows through it; gradients reach the recurrent layer
    through the samples that the gate lets fuse.
    """

    def forward(self, features: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
        return cycle_consistent(features, recurrent)
