"""Kensho Hara's 3D ResNets: ResNet-10..200, (2+1)D, pre-activation and wide ResNets, ResNeXt, ResNetL-10.

Hara et al., "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?", CVPR 2018,
arXiv 1711.09577.

One trunk, :class:`HaraResNet`, takes the residual block as an argument; the named models are settings of it.
Module and state-dict names are those of kenshohara/3D-ResNets-PyTorch (and of the copy in
okankop/Efficient-3DCNNs), so its checkpoints load without a key map once a ``module.`` prefix is stripped.

Two versions of the original exist and both are options here:

* the CVPR2018 branch and Efficient-3DCNNs ("old API": ``resnetXX(sample_size, sample_duration,
  shortcut_type)``): a 7x7x7 stem of 64 channels with stride (1, 2, 2), max-pool, and a fixed-size
  ``AvgPool3d((ceil(T/16), ceil(S/32), ceil(S/32)))`` head. The registered names default to this layout.
* master ("new API": ``generate_model(depth, n_input_channels, shortcut_type, conv1_t_size, conv1_t_stride,
  no_max_pool, widen_factor)``): the same ResNets with those stem options and ``AdaptiveAvgPool3d(1)``. Its
  ResNeXt and wide ResNet widen the stem with the first stage (128 channels instead of 64): pass
  ``stem_width=128`` to get master's layout (and parameter counts) for those two families.

Every model here pools adaptively, so any clip length and frame size works; at the old API's training shape
(16x112x112) the final map is exactly the fixed pool's size and the two heads agree.

Parameter counts equal the measured code of both versions (and Efficient-3DCNNs') for every depth, shortcut
and class count. Where Köpüklü et al.'s Table 8 (arXiv 1904.02422) disagrees with its own code, the code is
followed: its ResNet-18/50/101 parameter figures (33.36M, 44.54M, 83.58M) fit neither shortcut (the code gives
33.34M/44.65M/83.70M with shortcut A, whose MFLOPs the table does match); its ResNeXt-101 row matches.

Shortcut "A" (parameter-free: stride-subsample the input and zero-pad the new channels) differs from the
original in one way: the original builds it from ``out.data``, which cuts the gradient through the identity
path of every downsampling block; here the gradient flows, as the ResNet paper's option A intends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import UsageError
from vidnet.network._registry import register_model

__all__ = [
    "HaraResNet",
    "BasicBlock3D",
    "Bottleneck3D",
    "WideBottleneck3D",
    "ResNeXtBottleneck3D",
    "PreActBasicBlock3D",
    "PreActBottleneck3D",
    "ZeroPadShortcut",
]

PAPER = "Hara et al., Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?, arXiv 1711.09577"
PAPER_RESNETL = (
    "Köpüklü et al., Real-time Hand Gesture Detection and Classification Using Convolutional Neural Networks, "
    "arXiv 1901.10323"
)


def _conv3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: subsample by ``stride`` (the original's ``avg_pool3d`` with kernel 1) and zero-pad channels."""

    def __init__(self, cout: int, stride: int) -> None:
        super().__init__()
        self.cout = cout
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        out = x[:, :, ::s, ::s, ::s]
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.cout - out.shape[1]))


class BasicBlock3D(nn.Module):
    """Two 3x3x3 convolutions with BN; ReLU after the residual sum."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3(cin, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck3D(nn.Module):
    """1x1x1 reduce, 3x3x3 (carrying the stride), 1x1x1 expand by ``expansion``; ReLU after the sum."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 mid: int | None = None, groups: int = 1) -> None:
        super().__init__()
        mid = planes if mid is None else mid
        self.conv1 = nn.Conv3d(cin, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = _conv3(mid, mid, stride, groups)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class WideBottleneck3D(Bottleneck3D):
    """Wide ResNet bottleneck: stage widths multiplied by k, expansion 2 instead of 4."""

    expansion = 2


class ResNeXtBottleneck3D(Bottleneck3D):
    """ResNeXt bottleneck: ``cardinality`` groups in the 3x3x3 conv of width ``cardinality * (planes // 32)``."""

    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *,
                 cardinality: int = 32) -> None:
        super().__init__(cin, planes, stride, downsample, mid=cardinality * (planes // 32), groups=cardinality)


class PreActBasicBlock3D(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv twice, no activation after the sum."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(cin)
        self.conv1 = _conv3(cin, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        # As in the original, the shortcut takes the block input before its BN-ReLU.
        return out + (x if self.downsample is None else self.downsample(x))


class PreActBottleneck3D(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv three times (1x1x1, 3x3x3, 1x1x1 x4), no activation after the sum."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(cin)
        self.conv1 = nn.Conv3d(cin, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3(planes, planes, stride)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def _mid_2plus1d(cin: int, cout: int, t: int = 3, s: int = 3) -> int:
    # Hara's (2+1)D width: as many mid channels as keep the factorised pair at the 3D conv's parameter count.
    return (cin * cout * t * s * s) // (cin * s * s + t * cout)


def _add_2plus1d(block: nn.Module, i: int | str, cin: int, cout: int, stride: int) -> None:
    # The pair sits on the block itself as conv{i}_s, bn{i}_s, conv{i}_t, bn{i}_t: the original's key names.
    mid = _mid_2plus1d(cin, cout)
    setattr(block, f"conv{i}_s", nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False))
    setattr(block, f"bn{i}_s", nn.BatchNorm3d(mid))
    setattr(block, f"conv{i}_t", nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))
    setattr(block, f"bn{i}_t", nn.BatchNorm3d(cout))


def _run_2plus1d(block: nn.Module, i: int, x: torch.Tensor) -> torch.Tensor:
    x = block.relu(getattr(block, f"bn{i}_s")(getattr(block, f"conv{i}_s")(x)))
    return getattr(block, f"bn{i}_t")(getattr(block, f"conv{i}_t")(x))


class BasicBlock2Plus1D(nn.Module):
    """Basic block with each 3x3x3 conv factorised into 1x3x3 and 3x1x1 (Hara's ``resnet2p1d``)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        _add_2plus1d(self, 1, cin, planes, stride)
        _add_2plus1d(self, 2, planes, planes, 1)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _run_2plus1d(self, 2, self.relu(_run_2plus1d(self, 1, x)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck2Plus1D(nn.Module):
    """Bottleneck whose 3x3x3 conv is factorised into 1x3x3 and 3x1x1 (Hara's ``resnet2p1d``)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        _add_2plus1d(self, 2, planes, planes, stride)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(_run_2plus1d(self, 2, out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


BlockName = Literal["basic", "bottleneck", "wide", "resnext", "preact_basic", "preact_bottleneck", "basic_2plus1d",
                    "bottleneck_2plus1d"]
_BLOCKS: dict[str, type[nn.Module]] = {
    "basic": BasicBlock3D,
    "bottleneck": Bottleneck3D,
    "wide": WideBottleneck3D,
    "resnext": ResNeXtBottleneck3D,
    "preact_basic": PreActBasicBlock3D,
    "preact_bottleneck": PreActBottleneck3D,
    "basic_2plus1d": BasicBlock2Plus1D,
    "bottleneck_2plus1d": Bottleneck2Plus1D,
}


class HaraResNet(nn.Module):
    """3D ResNet trunk of Hara et al.: stem, max-pool, four stages, global average pool, linear.

    Args:
        block: residual block, by name (``"basic"``, ``"bottleneck"``, ``"wide"``, ``"resnext"``,
            ``"preact_basic"``, ``"preact_bottleneck"``) or as a block class with an ``expansion`` attribute.
        layers: blocks per stage.
        widths: ``planes`` of the four stages (the block's output is ``planes * expansion``).
        stem_width: stem output channels (64; master's ResNeXt and wide ResNet use the first stage width).
        shortcut: ``"A"`` (zero-padded identity, no parameters) or ``"B"`` (1x1x1 conv + BN) where the shape
            changes.
        cardinality: groups of the ResNeXt block (ignored by the others).
        conv1_t_size: temporal kernel of the stem (7; master's option, padded by ``conv1_t_size // 2``).
        conv1_t_stride: temporal stride of the stem (1; master's option).
        conv_type: ``"3d"``, or ``"2plus1d"`` for Hara's ``resnet2p1d``: the stem and every 3x3x3 conv split into
            a spatial (1xkxk) and a temporal (kx1x1) conv with as many mid channels as keep the 3D parameter
            count (``basic``/``bottleneck`` blocks only).
        no_max_pool: skip the stem max-pool (master's option).
        widen_factor: multiplies the stem and stage widths, ``int(c * widen_factor)`` (master's option).
        in_channels: input channels (master's ``n_input_channels``; 2 for optical flow).
        num_classes: classifier outputs.
        dropout: dropout before ``fc`` (0, as the original).
    """

    def __init__(
        self,
        *,
        block: BlockName | type[nn.Module],
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        shortcut: Literal["A", "B"] = "B",
        cardinality: int = 32,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        conv_type: Literal["3d", "2plus1d"] = "3d",
        no_max_pool: bool = False,
        widen_factor: float = 1.0,
        in_channels: int = 3,
        num_classes: int = 400,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if conv_type not in ("3d", "2plus1d"):
            raise UsageError(f"HaraResNet: conv_type must be '3d' or '2plus1d', got {conv_type!r}")
        if conv_type == "2plus1d":
            if block not in ("basic", "bottleneck"):
                raise UsageError(f"HaraResNet: conv_type='2plus1d' needs block 'basic' or 'bottleneck', got {block!r}")
            block = f"{block}_2plus1d"
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise UsageError(f"HaraResNet: block must be one of {sorted(_BLOCKS)}, got {block!r}")
            block = _BLOCKS[block]
        shortcut = str(shortcut).upper()  # type: ignore[assignment]
        if shortcut not in ("A", "B"):
            raise UsageError(f"HaraResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise UsageError(f"HaraResNet: layers and widths need 4 stages, got {list(layers)} and {list(widths)}")
        if not widen_factor > 0:
            raise UsageError(f"HaraResNet: widen_factor must be positive, got {widen_factor}")
        if conv1_t_size < 1 or conv1_t_stride < 1:
            raise UsageError(f"HaraResNet: conv1_t_size and conv1_t_stride must be >= 1, got "
                             f"{conv1_t_size}, {conv1_t_stride}")
        widths = [int(c * widen_factor) for c in widths]
        stem = int(stem_width * widen_factor)
        self.block = block
        self.shortcut = shortcut
        block_kwargs = {"cardinality": cardinality} if issubclass(block, ResNeXtBottleneck3D) else {}

        self.conv_type = conv_type
        if conv_type == "3d":
            self.conv1 = nn.Conv3d(in_channels, stem, kernel_size=(conv1_t_size, 7, 7),
                                   stride=(conv1_t_stride, 2, 2), padding=(conv1_t_size // 2, 3, 3), bias=False)
            self.bn1 = nn.BatchNorm3d(stem)
        else:
            mid = (in_channels * stem * conv1_t_size * 49) // (in_channels * 49 + conv1_t_size * stem)
            self.conv1_s = nn.Conv3d(in_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
            self.bn1_s = nn.BatchNorm3d(mid)
            self.conv1_t = nn.Conv3d(mid, stem, (conv1_t_size, 1, 1), (conv1_t_stride, 1, 1),
                                     (conv1_t_size // 2, 0, 0), bias=False)
            self.bn1_t = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if no_max_pool else nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        cin = stem
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True), start=1):
            stride = 1 if i == 1 else 2
            cout = planes * block.expansion
            downsample: nn.Module | None = None
            if stride != 1 or cin != cout:
                if shortcut == "A":
                    downsample = ZeroPadShortcut(cout, stride)
                else:
                    downsample = nn.Sequential(nn.Conv3d(cin, cout, kernel_size=1, stride=stride, bias=False),
                                               nn.BatchNorm3d(cout))
            blocks = [block(cin, planes, stride, downsample, **block_kwargs)]
            blocks += [block(cout, planes, **block_kwargs) for _ in range(1, n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 feature map, N x C x T' x H' x W'."""
        if self.conv_type == "3d":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.relu(self.bn1_s(self.conv1_s(x)))
            x = self.relu(self.bn1_t(self.conv1_t(x)))
        x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.avgpool(self.forward_features(x)).flatten(1)))


_DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def _layers(depth: int) -> tuple[str, tuple[int, ...]]:
    if depth not in _DEPTHS:
        raise UsageError(f"3D ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
    return _DEPTHS[depth]


def resnet_3d(*, model_depth: int, num_classes: int = 400, **options) -> HaraResNet:
    """Hara's 3D ResNet-``model_depth`` (10, 18, 34, 50, 101, 152, 200); shortcut "B" unless ``shortcut="A"``.

    ``conv_type="2plus1d"`` gives master's ``resnet2p1d`` (registered as ``resnet2p1d<depth>_3d``).

    Options are those of :class:`HaraResNet` (``shortcut``, ``conv1_t_size``, ``widen_factor``, ...).
    """
    block, layers = _layers(model_depth)
    return HaraResNet(block=block, layers=layers, num_classes=num_classes, **options)


def preresnet_3d(*, model_depth: int, num_classes: int = 400, **options) -> HaraResNet:
    """Hara's pre-activation 3D ResNet-``model_depth`` (18..200)."""
    block, layers = _layers(model_depth)
    return HaraResNet(block=f"preact_{block}", layers=layers, num_classes=num_classes, **options)


def wide_resnet_3d(*, model_depth: int, k: int = 2, num_classes: int = 400, **options) -> HaraResNet:
    """Hara's wide 3D ResNet-``model_depth`` (50..200): bottleneck widths times ``k``, expansion 2.

    The stem stays at 64 channels as in the CVPR2018 branch (the published WRN-50 checkpoint); master widens
    it with the first stage, which is ``stem_width=64 * k``.
    """
    block, layers = _layers(model_depth)
    if block != "bottleneck":
        raise UsageError(f"wide 3D ResNet depth must be 50, 101, 152 or 200, got {model_depth}")
    if k < 1:
        raise UsageError(f"wide 3D ResNet: k must be >= 1, got {k}")
    widths = tuple(c * k for c in (64, 128, 256, 512))
    return HaraResNet(block="wide", layers=layers, widths=widths, num_classes=num_classes, **options)


def resnext_3d(*, model_depth: int, cardinality: int = 32, num_classes: int = 400, **options) -> HaraResNet:
    """Hara's 3D ResNeXt-``model_depth`` (50, 101, 152): stage widths 128..1024, expansion 2, ``cardinality`` groups.

    The stem has 64 channels as in the CVPR2018 branch and Efficient-3DCNNs (whose checkpoints load); master's
    ResNeXt has a 128-channel stem, which is ``stem_width=128``.
    """
    block, layers = _layers(model_depth)
    if block != "bottleneck":
        raise UsageError(f"3D ResNeXt depth must be 50, 101, 152 or 200, got {model_depth}")
    return HaraResNet(block="resnext", layers=layers, widths=(128, 256, 512, 1024), cardinality=cardinality,
                      num_classes=num_classes, **options)


def resnetl_3d(*, num_classes: int = 400, **options) -> HaraResNet:
    """ResNetL-10: the 3D ResNet-10 at a quarter of the width (stem and stages 16/32/64/128).

    From ahmetgunduz/Real-time-GesRec (the gesture detector of Köpüklü et al.); shortcut "B" unless
    ``shortcut="A"``.
    """
    return HaraResNet(block="basic", layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16,
                      num_classes=num_classes, **options)


for _d in _DEPTHS:
    register_model(f"resnet{_d}_3d", family="hara_resnet", paper=PAPER, depth=str(_d), model_depth=_d)(resnet_3d)
for _d in _DEPTHS:
    register_model(f"resnet2p1d{_d}_3d", family="hara_resnet2p1d", paper=PAPER, depth=str(_d), model_depth=_d,
                   conv_type="2plus1d")(resnet_3d)
for _d in (18, 34, 50, 101, 152, 200):
    register_model(f"preresnet{_d}_3d", family="hara_preresnet", paper=PAPER, depth=str(_d), model_depth=_d)(
        preresnet_3d
    )
for _d in (50, 101, 152, 200):
    register_model(f"wide_resnet{_d}_3d", family="hara_wide_resnet", paper=PAPER, depth=str(_d), model_depth=_d)(
        wide_resnet_3d
    )
for _d in (50, 101, 152):
    register_model(f"resnext{_d}_3d", family="hara_resnext", paper=PAPER, depth=str(_d), model_depth=_d)(resnext_3d)
register_model("resnetl10_3d", family="resnetl", paper=PAPER_RESNETL, depth="10")(resnetl_3d)
