"""Residual blocks of the video ResNet trunk, with an injected conv maker and an optional SR layer.

Both blocks keep the original SRTG trunk's expansion of 1: a stage of ``planes`` channels outputs
``planes`` channels (64/128/256/512), also for the bottleneck block (the ResNet paper's expansion is 4).

``groups``/``width_per_group`` set the inner width ``int(planes * width_per_group / 64) * groups``. With
``grouped_conv=True`` (vidnet's default) the groups reach the spatio-temporal convolution, which makes the
``*xt*`` models real ResNeXts (Xie et al., arXiv:1611.05431). ``grouped_conv=False`` reproduces the
original code, which only widened a dense convolution (``r3dxt101_32x8d``: 1.04 B parameters) and ignored
both settings in the basic block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn as nn

from vidnet.network.layers.conv_makers import ConvMaker, midplanes

__all__ = ["SRPlace", "BasicBlock", "Bottleneck"]

SRPlace = Literal["start", "top", "mid", "end", "skip", "final"]
"""Where a block applies its SR layer: ``start`` the input of the residual branch, ``top`` after the first
convolution, ``mid`` after the second, ``end`` after the third (bottleneck only), ``skip`` on the shortcut,
``final`` after the residual sum and activation (SRTG's placement)."""

_PLACES = get_args(SRPlace)


def _inner_width(planes: int, groups: int, width_per_group: int) -> int:
    return int(planes * width_per_group / 64) * groups


class _Block(nn.Module):
    """Shared wiring: shortcut, residual sum, activation and the SR layer at its place."""

    sr_channels: dict[str, int]

    def _init_sr(self, sr_layer: Callable[[int], nn.Module] | None, sr_place: str) -> None:
        if sr_place not in self.sr_channels:
            allowed = ", ".join(p for p in _PLACES if p in self.sr_channels)
            raise ValueError(f"{type(self).__name__} has no SR place {sr_place!r}; choose one of {allowed}")
        self.sr_place = sr_place
        # Sized for the channels at its place (the original sized start/top layers wrongly).
        self.sr = sr_layer(self.sr_channels[sr_place]) if sr_layer is not None else None

    def _sr(self, place: str, x: torch.Tensor) -> torch.Tensor:
        return self.sr(x) if self.sr is not None and self.sr_place == place else x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self._residual(self._sr("start", x))
        out = self.act(out + self._sr("skip", shortcut))
        return self._sr("final", out)


class BasicBlock(_Block):
    """Two spatio-temporal convolutions (conv maker, norm, activation; conv maker, norm) and a shortcut.

    Args:
        inplanes: input channels.
        planes: output channels.
        conv_maker: builds ``conv_maker(in, out, midplanes, stride, groups=, norm_layer=, act_layer=)``.
        stride: stride of the first convolution (over T, H and W).
        downsample: shortcut projection, or None for the identity.
        groups: convolution groups (ResNeXt cardinality).
        width_per_group: channels per group at 64 planes; ``groups=1, width_per_group=64`` is the plain block.
        grouped_conv: let ``groups`` reach the convolutions; False ignores ``groups`` and ``width_per_group``
            as the original code did.
        sr_layer: ``sr_layer(channels) -> module`` (e.g. a partial of ``SqueezeRecursion``), or None.
        sr_place: where the SR layer goes (see :data:`SRPlace`; ``end`` does not exist in a basic block).
        norm_layer: normalisation ``norm_layer(channels)``.
        act_layer: activation ``act_layer()``.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        conv_maker: ConvMaker,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
        grouped_conv: bool = True,
        sr_layer: Callable[[int], nn.Module] | None = None,
        sr_place: SRPlace = "final",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        mid = midplanes(inplanes, planes)
        if grouped_conv and (groups != 1 or width_per_group != 64):
            width = _inner_width(planes, groups, width_per_group)
            mid = _inner_width(mid, groups, width_per_group)
        else:
            width, groups = planes, 1
        kw = {"groups": groups, "norm_layer": norm_layer, "act_layer": act_layer}
        self.conv1 = nn.Sequential(conv_maker(inplanes, width, mid, stride, **kw), norm_layer(width), act_layer())
        self.conv2 = nn.Sequential(conv_maker(width, planes, mid, 1, **kw), norm_layer(planes))
        self.downsample = downsample
        self.act = act_layer()
        self.sr_channels = {"start": inplanes, "top": width, "mid": planes, "skip": planes, "final": planes}
        self._init_sr(sr_layer, sr_place)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self._sr("top", self.conv1(x))
        return self._sr("mid", self.conv2(out))

    def last_norm(self) -> nn.Module:
        """The norm layer closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.conv2[1]


class Bottleneck(_Block):
    """1x1x1 reduce, spatio-temporal conv maker, 1x1x1 expand (expansion 1, see the module docstring).

    Args: as :class:`BasicBlock` (``width_per_group=128`` gives the ``wide_*`` models).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        conv_maker: ConvMaker,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
        grouped_conv: bool = True,
        sr_layer: Callable[[int], nn.Module] | None = None,
        sr_place: SRPlace = "final",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        width = _inner_width(planes, groups, width_per_group)
        mid_width = _inner_width(midplanes(inplanes, planes), groups, width_per_group)
        kw = {"groups": groups if grouped_conv else 1, "norm_layer": norm_layer, "act_layer": act_layer}
        self.conv1 = nn.Sequential(nn.Conv3d(inplanes, width, 1, bias=False), norm_layer(width), act_layer())
        self.conv2 = nn.Sequential(conv_maker(width, width, mid_width, stride, **kw), norm_layer(width), act_layer())
        self.conv3 = nn.Sequential(nn.Conv3d(width, planes, 1, bias=False), norm_layer(planes))
        self.downsample = downsample
        self.act = act_layer()
        self.sr_channels = {"start": inplanes, "top": width, "mid": width, "end": planes, "skip": planes,
                            "final": planes}
        self._init_sr(sr_layer, sr_place)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self._sr("top", self.conv1(x))
        out = self._sr("mid", self.conv2(out))
        return self._sr("end", self.conv3(out))

    def last_norm(self) -> nn.Module:
        """The norm layer closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.conv3[1]
