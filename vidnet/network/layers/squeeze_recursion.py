"""Squeeze-and-Recursion (SR) block of SRTG, with an optional temporal gate.

Stergiou & Poppe, "Learn to cycle: Time-consistent feature discovery for action recognition",
arXiv:2006.08247.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SqueezeRecursion"]


class SqueezeRecursion(nn.Module):
    """Spatial squeeze, a multi-layer LSTM over the frames, and a multiplicative recalibration.

    ``s = LSTM(mean_{H,W}(x))`` (shape ``B x C x T``, values in (-1, 1)); the output is ``x * s`` broadcast
    over H and W. With a gate, only the samples the gate accepts are recalibrated and the others pass
    unchanged; the original code's gate always returned zeros, which made ``gates=True`` an exact no-op.

    Args:
        planes: channels C of the input (the LSTM's input and hidden size).
        num_layers: stacked LSTM layers (2 in SRTG).
        gate: a module ``gate(squeezed, recurrent) -> bool mask of shape B`` (e.g.
            :class:`~vidnet.network.layers.temporal_gate.TemporalCycleGate`), or None to always fuse.
    """

    def __init__(self, planes: int, *, num_layers: int = 2, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.lstm = nn.LSTM(planes, planes, num_layers=num_layers, batch_first=True)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Averaging over H and W always (also when one of them is 1) keeps the rank right: the original
        # skipped the squeeze unless both were > 1 and then fed a 4-D tensor on.
        squeezed = x.mean(dim=(3, 4))  # B x C x T
        recurrent, _ = self.lstm(squeezed.transpose(1, 2))  # B x T x C
        recurrent = recurrent.transpose(1, 2)  # B x C x T
        fused = x * recurrent[..., None, None]
        if self.gate is None:
            return fused
        accept = self.gate(squeezed, recurrent)
        return torch.where(accept.view(-1, 1, 1, 1, 1), fused, x)

    def extra_repr(self) -> str:
        return f"gated={self.gate is not None}"
