"""MiCT-ResNet: a 2D ResNet with five 3D convolutions summed into it (Mixed Convolutional Tube).

Zhou, Sun, Zha and Zeng, "MiCT: Mixed 3D/2D Convolutional Tube for Human Action Recognition", CVPR 2018;
ResNet-backbone version as in fmahoudeau/MiCT-Net-PyTorch (whose state-dict names vidnet keeps).

Layout: a 3D stem (t x 7 x 7, causal temporal padding) runs beside the 2D ResNet stem, which sees every 2nd
frame; at the start of each stage a 3x3x3 convolution runs beside the stage's first 2D block, which sees every
``t``-th frame. Their outputs are added (cross-domain residual sum); the rest of the stage runs frame by
frame. The head classifies every remaining time step and averages the scores.

Differences from the original, on purpose:
* ``first_kernel_t`` selects the 3 / 5 / 7 x 7 x 7 first kernel that the original README reports but its code
  hard-codes to 7 (parameters 16,014,053 / 16,032,869 / 16,051,685 for ResNet-18 at 101 classes).
* 2D convolutions get torchvision's Kaiming initialisation (the original left them at PyTorch's default).
* Any clip length and size works: the temporal paddings keep the 2D and 3D paths the same length for any T.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network._registry import register_model
from vidnet.network.inflate import inflate_state_dict
from vidnet.network.resnet2d import (
    BasicBlock,
    TransferReport,
    init_resnet_,
    make_stage,
    transfer_resnet2d_weights,
)
from vidnet.network.weights import read_state_dict

__all__ = ["MiCTResNet", "MiCTStage", "mict_resnet"]

_PAPER = "Zhou et al., MiCT: Mixed 3D/2D Convolutional Tube for Human Action Recognition, CVPR 2018"

# Temporal strides of [3D stem, stage 1..4]; v1 reduces T by 16 overall, v2 by 4 (the original's table).
_T_STRIDES = {"v1": (1, 1, 2, 2, 2), "v2": (1, 1, 1, 2, 1)}
_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _frames(x: torch.Tensor, step: int = 1) -> tuple[torch.Tensor, int]:
    """``[N, C, T, H, W]`` -> every ``step``-th frame as a batch of images ``[N*T', C, H, W]`` (sample-major)."""
    x = x[:, :, ::step] if step > 1 else x
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w), t


def _clip(x: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of :func:`_frames`: ``[N*T, C, H, W]`` -> ``[N, C, T, H, W]``."""
    nt, c, h, w = x.shape
    return x.view(nt // t, t, c, h, w).transpose(1, 2)


class MiCTStage(nn.Module):
    """One ResNet stage with a 3x3x3 convolution beside its first block (keys ``bottlenecks.*``, ``conv``, ``bn``).

    Args:
        inplanes: input channels.
        planes: output channels.
        blocks: number of 2D blocks.
        t_stride: temporal stride (the first 2D block sees every ``t_stride``-th frame).
        stride: spatial stride of the first block and of the 3D convolution.
    """

    def __init__(self, inplanes: int, planes: int, blocks: int, *, t_stride: int, stride: int) -> None:
        super().__init__()
        self.t_stride = t_stride
        # Same blocks and downsample rule as torchvision, so ImageNet weights map name for name.
        self.bottlenecks = nn.ModuleList(make_stage(BasicBlock, inplanes, planes, blocks, stride))
        self.conv = nn.Conv3d(inplanes, planes, 3, stride=(t_stride, stride, stride), bias=False)
        self.bn = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Causal temporal padding (0 before, 2 after) gives ceil(T / t_stride) steps, as the 2D path's x[::t].
        out3d = self.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1, 0, 2)))))
        frames, t = _frames(x, self.t_stride)
        out = out3d + _clip(self.bottlenecks[0](frames), t)
        frames, t = _frames(out)
        for block in self.bottlenecks[1:]:
            frames = block(frames)
        return _clip(frames, t)


class MiCTResNet(nn.Module):
    """MiCT-ResNet on clips ``[N, 3, T, H, W]``, any T >= 1 and H, W >= 1.

    Args:
        layers: 2D BasicBlocks per stage (``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-34).
        num_classes: classifier outputs.
        version: ``"v1"`` (temporal stride 16) or ``"v2"`` (temporal stride 4).
        first_kernel_t: temporal size of the first 3D kernel: 3, 5 or 7 (the original's only choice was 7).
        dropout: channel dropout (Dropout3d) before the classifier.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 101,
        version: Literal["v1", "v2"] = "v1",
        first_kernel_t: Literal[3, 5, 7] = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if version not in _T_STRIDES:
            raise VidnetError(f"MiCT version {version!r} is not one of {sorted(_T_STRIDES)}")
        if first_kernel_t not in (3, 5, 7):
            raise VidnetError(f"MiCT first_kernel_t={first_kernel_t}: expected 3, 5 or 7")
        ts = _T_STRIDES[version]
        self.version = version
        self.first_kernel_t = first_kernel_t
        # 2D stem (torchvision's), applied to every 2nd frame.
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1)
        # 3D stem; its max-pool halves T, matching the 2D stem's frame step of 2.
        self.conv2 = nn.Conv3d(3, 64, (first_kernel_t, 7, 7), stride=(ts[0], 2, 2), bias=False)
        self.bn2 = nn.BatchNorm3d(64)
        self.maxpool2 = nn.MaxPool3d(3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage = MiCTStage(inplanes, planes, blocks, t_stride=ts[i + 1], stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes
        self.drop = nn.Dropout3d(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after stage 4, ``[N, 512, T', H', W']``."""
        if x.dim() != 5:
            raise VidnetError(f"MiCTResNet expects a clip [N, C, T, H, W], got shape {tuple(x.shape)}")
        kt = self.first_kernel_t
        # Causal temporal padding (none before, kt-1 after) keeps T, so the 3D max-pool yields ceil(T/2) steps.
        out3d = self.maxpool2(self.relu(self.bn2(self.conv2(F.pad(x, (3, 3, 3, 3, 0, kt - 1))))))
        frames, t = _frames(x, 2)
        out2d = _clip(self.maxpool1(self.relu(self.bn1(self.conv1(frames)))), t)
        out = out3d + out2d
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.drop(self.forward_features(x))
        per_step = self.fc(feats.mean(dim=(3, 4)).transpose(1, 2))  # [N, T', classes]: each time step scored
        return per_step.mean(dim=1)

    def load_resnet2d(
        self, source: str | Path | Mapping[str, torch.Tensor], *, inflate_3d: bool = False
    ) -> TransferReport:
        """Initialise the 2D part from a torchvision-format ResNet-18/34 file or state dict.

        ``layerX.Y.*`` goes to ``layerX.bottlenecks.Y.*``; the classifier keeps its initialisation. The 3D
        convolutions keep theirs too (the original's ImageNet transfer) unless ``inflate_3d``: then each
        starts as the inflated 2D kernel it runs beside (stem ``conv1`` -> ``conv2``, first block's ``conv1``
        -> ``layerX.conv``, with the matching BatchNorm), so a static clip first sees twice the 2D features.

        Raises:
            VidnetError: the source does not fill every 2D entry (wrong depth or not a ResNet).
        """
        report = transfer_resnet2d_weights(
            self,
            source,
            key_map=_torchvision_to_mict,
            require=lambda k: k.startswith(("conv1.", "bn1.")) or ".bottlenecks." in k,
        )
        if inflate_3d:
            new, _ = inflate_state_dict(read_state_dict(source), self, key_map=_torchvision_to_mict_3d)
            self.load_state_dict(new, strict=False)
            report.loaded = sorted({*report.loaded, *new})
            report.missing = [k for k in report.missing if k not in new]
        return report


def _torchvision_to_mict(key: str) -> str | None:
    if key.startswith(("conv1.", "bn1.")):
        return key
    if key.startswith("layer"):
        stage, rest = key.split(".", 1)
        return f"{stage}.bottlenecks.{rest}"
    return None  # fc: a new task's classifier


def _torchvision_to_mict_3d(key: str) -> str | None:
    """The 2D layer each 3D convolution parallels: same input, output channels and spatial stride."""
    top, rest = key.split(".", 1)
    if top in ("conv1", "bn1"):
        return f"{'conv2' if top == 'conv1' else 'bn2'}.{rest}"
    if top.startswith("layer") and rest.startswith(("0.conv1.", "0.bn1.")):
        layer, param = rest[2:].split(".", 1)
        return f"{top}.{'conv' if layer == 'conv1' else 'bn'}.{param}"
    return None


def mict_resnet(
    depth: int,
    *,
    num_classes: int = 101,
    version: Literal["v1", "v2"] = "v1",
    first_kernel_t: Literal[3, 5, 7] = 7,
    dropout: float = 0.5,
    pretrained_2d: str | Path | None = None,
    inflate_3d: bool = False,
) -> MiCTResNet:
    """Build MiCT-ResNet-18 or -34.

    Args:
        depth: 18 or 34 (the BasicBlock backbones the design sums channel-for-channel).
        num_classes: classifier outputs.
        version: ``"v1"`` or ``"v2"`` temporal strides.
        first_kernel_t: temporal size of the first 3D kernel (3, 5 or 7).
        dropout: Dropout3d rate before the classifier.
        pretrained_2d: optional torchvision ResNet weight file for the 2D part.
        inflate_3d: with ``pretrained_2d``, also start the 3D convolutions as inflated 2D kernels.
    """
    if depth not in _LAYERS:
        raise VidnetError(f"MiCT-ResNet depth {depth} is not one of {sorted(_LAYERS)}")
    model = MiCTResNet(
        _LAYERS[depth], num_classes=num_classes, version=version, first_kernel_t=first_kernel_t, dropout=dropout
    )
    if pretrained_2d is not None:
        model.load_resnet2d(pretrained_2d, inflate_3d=inflate_3d)
    elif inflate_3d:
        raise VidnetError("inflate_3d needs pretrained_2d (a torchvision ResNet weight file)")
    return model


@register_model("mict_resnet18", family="mict", paper=_PAPER, depth="18", aliases=("mictresnet18",))
def mict_resnet18(*, num_classes: int = 101, **options) -> MiCTResNet:
    """MiCT-ResNet-18 (16,051,685 parameters at 101 classes with the 7x7x7 first kernel)."""
    return mict_resnet(18, num_classes=num_classes, **options)


@register_model("mict_resnet34", family="mict", paper=_PAPER, depth="34", aliases=("mictresnet34",))
def mict_resnet34(*, num_classes: int = 101, **options) -> MiCTResNet:
    """MiCT-ResNet-34 (26,159,845 parameters at 101 classes with the 7x7x7 first kernel)."""
    return mict_resnet(34, num_classes=num_classes, **options)
