"""Convolution makers of the video ResNet trunk: 3D, (2+1)D and channel-separated (CSN) convolutions.

A conv maker maps ``in_planes -> out_planes`` with one spatio-temporal stride and is injected into the
residual blocks, so R3D, R(2+1)D, ir-CSN and ip-CSN are one trunk with a different maker (torchvision's
``conv_makers`` and pytorchvideo's CSN-as-configuration follow the same idea).

Every maker is an ``nn.Sequential`` whose children sit at the indices the original SRTG code used
(``conv1.0.0.weight`` for a plain 3D convolution, ``.0/.1/.3`` for (2+1)D, ``.0/.1/.3.0`` for ip-CSN), so
checkpoints saved by that code load by name.

Citations: R3D and R(2+1)D, Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
Recognition", arXiv:1711.11248. CSN, Tran et al., "Video Classification with Channel-Separated
Convolutional Networks", arXiv:1904.02811.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

__all__ = ["ConvMaker", "Conv3DSimple", "Conv3DNoTemporal", "Conv2Plus1D", "Conv3DDepthwise", "IPConv3DDepthwise",
           "midplanes"]

ConvMaker = Callable[..., nn.Module]
Norm = Callable[[int], nn.Module]
Act = Callable[[], nn.Module]
Layers = list[nn.Module]


def midplanes(in_planes: int, out_planes: int) -> int:
    """Intermediate width of a (2+1)D factorisation with the parameters of a full 3x3x3 convolution.

    ``floor(27 * in * out / (9 * in + 3 * out))`` (Tran et al. 2018, section 3.5); e.g. (64, 64) -> 144.
    """
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


def _conv3x3x3(in_planes: int, out_planes: int, stride: int, groups: int) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x3x3(in_planes: int, out_planes: int, stride: int, groups: int) -> nn.Conv3d:
    """Spatial only: kernel and stride 1 over T."""
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), groups=groups,
                     bias=False)


class _ConvMakerBase(nn.Sequential):
    """The signature every maker shares: ``maker(in, out, midplanes, stride, groups=, norm_layer=, act_layer=)``.

    A maker only says which layers it stacks (``_layers``). ``temporal_stride`` False tells the trunk that a
    stage built from this maker strides its projection shortcut over H and W only.
    """

    temporal_stride = True

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        midplanes: int | None = None,
        stride: int = 1,
        *,
        groups: int = 1,
        norm_layer: Norm = nn.BatchNorm3d,
        act_layer: Act = nn.ReLU,
    ) -> None:
        super().__init__(*self._layers(in_planes, out_planes, midplanes, stride, groups, norm_layer, act_layer))

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        raise NotImplementedError


class Conv3DSimple(_ConvMakerBase):
    """A full 3x3x3 convolution (R3D); ``midplanes`` is accepted for a uniform signature and unused."""

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        return [_conv3x3x3(cin, cout, stride, groups)]


class Conv3DNoTemporal(_ConvMakerBase):
    """A 1x3x3 convolution with a spatial-only stride (the 2D stages of MC3, Tran et al. 2018); a stage built
    from it also strides its projection shortcut over H and W only (``temporal_stride = False``)."""

    temporal_stride = False

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        return [_conv1x3x3(cin, cout, stride, groups)]


class Conv2Plus1D(_ConvMakerBase):
    """R(2+1)D: a 1x3x3 spatial convolution to ``midplanes``, norm, activation, then a 3x1x1 temporal one."""

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        if mid is None:
            raise TypeError("Conv2Plus1D needs midplanes (see midplanes())")
        return [
            _conv1x3x3(cin, mid, stride, groups),
            norm(mid),
            act(),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), groups=groups, bias=False),
        ]


class Conv3DDepthwise(_ConvMakerBase):
    """ir-CSN: a depthwise 3x3x3 convolution (one group per input channel); ``groups`` is implied."""

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        if cout % cin:
            raise ValueError(f"a depthwise convolution needs out_planes ({cout}) divisible by in_planes ({cin})")
        return [_conv3x3x3(cin, cout, stride, cin)]


class IPConv3DDepthwise(_ConvMakerBase):
    """ip-CSN: a 1x1x1 convolution (keeps the channel interactions), norm, activation, then ir-CSN's depthwise."""

    def _layers(self, cin: int, cout: int, mid: int | None, stride: int, groups: int, norm: Norm, act: Act) -> Layers:
        if cin != cout:
            raise ValueError(f"ip-CSN needs in_planes == out_planes, got {cin} and {cout}")
        return [
            nn.Conv3d(cin, cout, 1, bias=False),
            norm(cout),
            act(),
            Conv3DDepthwise(cout, cout, stride=stride),
        ]
