"""Stochastic depth: drop a whole residual branch per sample (Huang et al., arXiv:1603.09382)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["DropPath"]


class DropPath(nn.Module):
    """In training, zero the branch of each sample with probability ``p`` and scale the rest by ``1 / (1 - p)``;
    the identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
