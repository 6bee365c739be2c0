"""The ResNet bottleneck with per-stage temporal kernels, used by SlowFast and X3D.

Unlike the video ResNet trunk's :class:`~vidnet.network.layers.residual_blocks.Bottleneck` (one injected
spatio-temporal convolution, expansion 1, stride over T too), these blocks put the temporal extent where the
SlowFast/X3D papers put it: a ``t x 1 x 1`` first convolution (SlowFast: ``t = 3`` in the fast pathway and in
the slow pathway's last two stages, else 1) and a ``t x 3 x 3`` middle one (SlowFast: ``t = 1``; X3D: ``t = 3``,
channel-wise), a spatial-only stride on the middle convolution, an optional Squeeze-and-Excitation after its
norm and a separate inner activation (X3D: swish). Widths are explicit (``in -> inner -> out``).

Citations: Feichtenhofer et al., "SlowFast Networks for Video Recognition", arXiv:1812.03982; Feichtenhofer,
"X3D: Expanding Architectures for Efficient Video Recognition", arXiv:2004.04730.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from vidnet.network.layers.squeeze_excitation import SqueezeExcitation3d
from vidnet.network.weights import KeyRule

__all__ = ["Bottleneck3d", "BRANCH_BLOCK_RULES", "MMACTION_BLOCK_RULES", "zero_last_norms_"]

BRANCH_BLOCK_RULES: list[KeyRule] = [
    # PySlowFast
    (r"\.branch1\.", ".downsample.0."),
    (r"\.branch1_bn\.", ".downsample.1."),
    (r"\.branch2\.([abc])\.", lambda m: f".conv{'abc'.index(m[1]) + 1}."),
    (r"\.branch2\.([abc])_bn\.", lambda m: f".bn{'abc'.index(m[1]) + 1}."),
    # PyTorchVideo
    (r"\.branch1_conv\.", ".downsample.0."),
    (r"\.branch1_norm\.", ".downsample.1."),
    (r"\.branch2\.conv_([abc])\.", lambda m: f".conv{'abc'.index(m[1]) + 1}."),
    (r"\.branch2\.norm_([abc])\.", lambda m: f".bn{'abc'.index(m[1]) + 1}."),
]
"""Key renames from PySlowFast's (``branch1[_bn]``, ``branch2.{a,b,c}[_bn]``) and PyTorchVideo's
(``branch1_{conv,norm}``, ``branch2.{conv,norm}_{a,b,c}``) bottlenecks to :class:`Bottleneck3d`'s. A model
whose blocks nest more under these names (X3D's SE in PyTorchVideo's ``norm_b``) renames those keys first."""

MMACTION_BLOCK_RULES: list[KeyRule] = [
    (r"\.conv([123])\.conv\.", r".conv\1."),
    (r"\.conv([123])\.bn\.", r".bn\1."),
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.", ".downsample.1."),
]
"""Key renames from MMAction2's bottlenecks (``convN`` is a ConvModule holding ``.conv`` and ``.bn``) to
:class:`Bottleneck3d`'s (``convN``, ``bnN``, ``downsample.0/1``)."""


class Bottleneck3d(nn.Module):
    """``t1x1x1`` conv, norm, act; ``t2x3x3`` conv (spatial stride, groups), norm, [SE], inner act; ``1x1x1`` conv,
    norm; plus the shortcut (a strided ``1x1x1`` projection and norm when the shape changes), then act.

    Args:
        in_channels: input channels.
        inner: channels of the two inner convolutions.
        out_channels: output channels.
        spatial_stride: stride of the middle convolution over H and W (the projection shortcut's too).
        temporal_kernel_a: temporal size of the first convolution.
        temporal_kernel_b: temporal size of the middle convolution.
        groups: groups of the middle convolution (``inner`` makes it channel-wise, as in X3D).
        se_reduced: bottleneck width of a Squeeze-and-Excitation after the middle norm, or 0 for none.
        inner_act: activation after the middle convolution (and SE).
        act_layer: the other activations.
        norm_layer: normalisation ``norm_layer(channels)``.
    """

    def __init__(
        self,
        in_channels: int,
        inner: int,
        out_channels: int,
        *,
        spatial_stride: int = 1,
        temporal_kernel_a: int = 1,
        temporal_kernel_b: int = 1,
        groups: int = 1,
        se_reduced: int = 0,
        inner_act: Callable[[], nn.Module] = nn.ReLU,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
    ) -> None:
        super().__init__()
        s = spatial_stride
        self.conv1 = nn.Conv3d(in_channels, inner, (temporal_kernel_a, 1, 1), padding=(temporal_kernel_a // 2, 0, 0),
                               bias=False)
        self.bn1 = norm_layer(inner)
        self.act1 = act_layer()
        self.conv2 = nn.Conv3d(inner, inner, (temporal_kernel_b, 3, 3), stride=(1, s, s),
                               padding=(temporal_kernel_b // 2, 1, 1), groups=groups, bias=False)
        self.bn2 = norm_layer(inner)
        self.se = SqueezeExcitation3d(inner, se_reduced) if se_reduced > 0 else None
        self.act2 = inner_act()
        self.conv3 = nn.Conv3d(inner, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.downsample = None
        if in_channels != out_channels or s != 1:
            self.downsample = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride=(1, s, s), bias=False),
                                            norm_layer(out_channels))
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv3(self.act2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(out + shortcut)

    def last_norm(self) -> nn.Module:
        """The norm closing the residual branch (zeroed at initialisation, as the SlowFast/X3D code does)."""
        return self.bn3


def zero_last_norms_(model: nn.Module) -> None:
    """Zero the closing norm's weight of every :class:`Bottleneck3d` in ``model``, so that each block starts
    as the identity (the SlowFast/X3D code's initialisation, after the usual one)."""
    for m in model.modules():
        if isinstance(m, Bottleneck3d):
            nn.init.zeros_(m.last_norm().weight)
