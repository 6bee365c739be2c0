"""Squeeze-and-Excitation for 3D feature maps (channel attention from the global average).

Hu et al., "Squeeze-and-Excitation Networks", arXiv:1709.01507. X3D places it after the depthwise
convolution of every other block (Feichtenhofer, arXiv:2004.04730).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

__all__ = ["SqueezeExcitation3d", "round_width"]


def round_width(width: float, multiplier: float, *, min_width: int = 8, divisor: int = 8) -> int:
    """``width * multiplier`` rounded to the nearest multiple of ``divisor`` (at least ``min_width``), and one
    divisor more when rounding lost over 10 % (the channel rule of X3D's expansion and of its SE width)."""
    scaled = width * multiplier
    out = max(min_width, int(scaled + divisor / 2) // divisor * divisor)
    if out < 0.9 * scaled:
        out += divisor
    return int(out)


class SqueezeExcitation3d(nn.Module):
    """``x * sigmoid(fc2(act(fc1(mean_{T,H,W}(x)))))`` with 1x1x1 convolutions (with bias) as the two layers.

    Args:
        channels: input and output channels.
        reduced: width of the bottleneck between the two layers.
        act_layer: activation between them.
    """

    def __init__(self, channels: int, reduced: int, *, act_layer: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(channels, reduced, 1, bias=True)
        self.act = act_layer()
        self.fc2 = nn.Conv3d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(w))))
