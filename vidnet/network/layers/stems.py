"""Stems of the video ResNet trunk (the layers before the first residual stage)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

__all__ = ["BasicStem", "R2Plus1dStem"]


class BasicStem(nn.Sequential):
    """3x7x7 convolution 3 -> 64 with spatial stride 2, norm, activation (R3D and CSN)."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            norm_layer(out_channels),
            act_layer(),
        )


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: 1x7x7 convolution 3 -> 45, norm, activation, 3x1x1 convolution 45 -> 64, norm, activation.

    45 is the (2+1)D width with the parameters of a 3x7x7 convolution from 3 to 64 channels (Tran et al. 2018).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 64,
        mid_channels: int = 45,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            norm_layer(mid_channels),
            act_layer(),
            nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            norm_layer(out_channels),
            act_layer(),
        )
