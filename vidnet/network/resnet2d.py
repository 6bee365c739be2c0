"""2D ResNets 18-152 with torchvision's state-dict layout, and the frame-averaging video classifier built on them.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385).

torchvision has no CPU build in vidnet's environment, so the 2D trunks that MiCT, the ResNet-CRNN and the
single-frame baseline need live here. Module names follow torchvision exactly (``conv1``, ``bn1``,
``layer1.0.downsample.0`` ...; Bottleneck stride on the 3x3 conv, "v1.5"), so a torchvision weight file such
as ``resnet50-0676ba61.pth`` loads with :func:`transfer_resnet2d_weights` or plain ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network._registry import register_model
from vidnet.network.weights import read_state_dict

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet2d",
    "FrameResNet",
    "RESNET2D_LAYERS",
    "resnet2d",
    "make_stage",
    "init_resnet_",
    "TransferReport",
    "transfer_resnet2d_weights",
]

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv 1512.03385)"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]

RESNET2D_LAYERS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
"""Block type and blocks per stage for each depth (torchvision's table)."""


def make_stage(block: Block, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage; the first block projects the shortcut when the shape changes (torchvision's rule)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet2d(nn.Module):
    """An image ResNet with torchvision's module names; input ``[N, 3, H, W]``, any H, W >= 1.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        num_classes: classifier outputs (1000 for ImageNet weight files).
        zero_init_residual: start each residual branch's last BN at zero (torchvision's option).
    """

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int] | list[int],
        *,
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            self.add_module(f"layer{i + 1}", make_stage(block, inplanes, planes, blocks, 1 if i == 0 else 2))
            inplanes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes)
        init_resnet_(self, zero_init_residual=zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``[N, num_features]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def init_resnet_(model: nn.Module, *, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation: Kaiming fan-out convolutions, unit/zero norms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


def resnet2d(depth: int, *, num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet2d:
    """Build a torchvision-layout 2D ResNet of depth 18, 34, 50, 101 or 152."""
    if depth not in RESNET2D_LAYERS:
        raise VidnetError(f"2D ResNet depth {depth} is not one of {sorted(RESNET2D_LAYERS)}")
    block, layers = RESNET2D_LAYERS[depth]
    return ResNet2d(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)


@dataclass
class TransferReport:
    """What a weight transfer did.

    Attributes:
        loaded: target keys that received a tensor.
        skipped: source keys not used, with the reason (``"no such key"``, ``"shape ..."``).
        missing: target keys left at their initial value.
    """

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def transfer_resnet2d_weights(
    target: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    key_map: Callable[[str], str | None] | None = None,
    require: Callable[[str], bool] | None = None,
) -> TransferReport:
    """Copy a torchvision-format 2D ResNet state dict into ``target``, name for name.

    Every trunk entry of the source must land (a ResNet-34 file does not half-fill a ResNet-18); the source
    classifier ``fc.*`` is copied only when its shape fits (an ImageNet file's 1000-way layer is skipped and
    reported). Old torchvision files without ``num_batches_tracked`` are fine. Nothing is loaded on error.

    Args:
        target: the model to fill (a :class:`ResNet2d`, or a model embedding one under other names).
        source: a weight file path or a state dict.
        key_map: maps a torchvision key to the target's key (None drops it); identity when omitted.
        require: predicate over target keys that must all be filled, so that a wrong file cannot leave part
            of the model at random (default: every key except ``fc.*`` when ``key_map`` is omitted).

    Raises:
        VidnetError: a source trunk entry found no place, or a required target entry stayed unfilled.
    """
    state = read_state_dict(source)
    where = str(source) if isinstance(source, str | Path) else "state dict"
    own = target.state_dict()
    report = TransferReport()
    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        dest = key_map(key) if key_map is not None else key
        if dest is None or dest not in own:
            report.skipped[key] = "no such key in the target"
        elif own[dest].shape != value.shape:
            report.skipped[key] = f"shape {tuple(value.shape)} != target {tuple(own[dest].shape)}"
        else:
            new[dest] = value
    report.loaded = sorted(new)
    report.missing = [k for k in own if k not in new]
    unused = [k for k in report.skipped if _not_classifier(k)]
    if unused:
        raise VidnetError(
            f"{where}: not a torchvision ResNet matching this model; {len(unused)} entries do not fit "
            f"(first: {unused[0]}: {report.skipped[unused[0]]})"
        )
    if require is None and key_map is None:
        require = _not_classifier
    gaps = [k for k in report.missing if require is not None and require(k) and not k.endswith("num_batches_tracked")]
    if gaps:
        raise VidnetError(
            f"{where}: not a torchvision ResNet of this depth; {len(gaps)} model entries unfilled (first: {gaps[0]})"
        )
    target.load_state_dict(new, strict=False)
    return report


def _not_classifier(key: str) -> bool:
    return not key.startswith("fc.")


class FrameResNet(ResNet2d):
    """Single-frame 2D ResNet applied to every frame of a clip; frame scores are averaged.

    Input ``[B, C, T, H, W]``; each frame is classified independently and the per-frame log-probabilities
    are averaged over time (the course assignment's video prediction sums ``log softmax`` over frames, the
    naive independent-frames posterior; the mean ranks classes identically and does not grow with T).
    The output is a log-probability vector, still valid as logits for ``cross_entropy``. The state dict is
    exactly torchvision's, so an ImageNet file loads with :func:`transfer_resnet2d_weights`.

    Args:
        average: ``"log_prob"`` (default, as above) or ``"logit"`` (mean of raw frame logits).
        frame_chunk: frames per trunk pass, bounding memory on whole-video inference (0: all at once).
    """

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int] | list[int],
        *,
        num_classes: int = 101,
        average: Literal["log_prob", "logit"] = "log_prob",
        frame_chunk: int = 0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
        if average not in ("log_prob", "logit"):
            raise VidnetError(f"average={average!r}: expected 'log_prob' or 'logit'")
        self.average = average
        self.frame_chunk = frame_chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise VidnetError(f"FrameResNet expects a clip [B, C, T, H, W], got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        chunk = self.frame_chunk if self.frame_chunk > 0 else b * t
        logits = torch.cat([super(FrameResNet, self).forward(f) for f in frames.split(chunk)])
        scores = F.log_softmax(logits, dim=1) if self.average == "log_prob" else logits
        return scores.view(b, t, -1).mean(dim=1)


def _frame_builder(depth: int) -> Callable[..., FrameResNet]:
    def build(*, num_classes: int = 101, **options) -> FrameResNet:
        block, layers = RESNET2D_LAYERS[depth]
        return FrameResNet(block, layers, num_classes=num_classes, **options)

    build.__name__ = f"frame_resnet{depth}"
    build.__doc__ = f"Single-frame 2D ResNet-{depth}, frame log-probabilities averaged over the clip."
    return build


for _depth in RESNET2D_LAYERS:
    register_model(f"frame_resnet{_depth}", family="frame2d", paper=_PAPER, depth=str(_depth))(_frame_builder(_depth))
