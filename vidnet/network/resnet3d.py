"""Video ResNets as one trunk: R3D, R(2+1)D, ir-/ip-CSN, their wide and ResNeXt versions, and SRTG.

Every registered name is a setting of :class:`VideoResNet`: a stem, a conv maker, a block type, stage depths,
groups/width, and optionally a Squeeze-and-Recursion layer (with or without the temporal gate) after every
residual block. The trunk follows the original SRTG code (Stergiou & Poppe), which its parameter counts and
checkpoints pin down:

* a 3x3x3 max-pool with stride 2 over T, H and W after the stem (torchvision's video ResNets have none);
* stage strides 1/2/2/2 over T as well as H and W, 1x1x1 projection shortcuts in stages 2-4;
* expansion 1 in the bottleneck too, so stages output 64/128/256/512 channels and the classifier sees 512
  (depths 50-200 have the standard ResNet block counts but not its 4x wider stage outputs);
* adaptive average pooling before the classifier, so any clip length and size works.

``srtg_*`` names add a Squeeze-and-Recursion layer after every residual block, gated by the temporal
cycle-consistency gate by default: the paper's SRTG block is SR *with* the temporal gate. ``gates=False``
gives the ungated SR that the original constructors built (its checkpoints and the parity fixtures).

``*xt*`` names are real ResNeXts (grouped spatio-temporal convolution). In the original, ``groups`` only
widened a dense convolution: ``r3dxt50_32x4d`` equalled ``wide_r3d50_2`` (140.9 M parameters) and
``r3dxt101_32x8d`` had 1.04 B; ``grouped_conv=False`` rebuilds those dense versions, for example to load
their checkpoints. ``r3dxt34_32d`` uses basic blocks, which the original left plain (it equalled ``r3d_34``);
here its two convolutions are grouped at inner width ``2 * planes``.

Citations: R3D/R(2+1)D, Tran et al., arXiv:1711.11248. CSN, Tran et al., arXiv:1904.02811. ResNeXt, Xie et
al., arXiv:1611.05431. Wide ResNet, Zagoruyko & Komodakis, arXiv:1605.07146. SRTG, Stergiou & Poppe,
"Learn to cycle: Time-consistent feature discovery for action recognition", arXiv:2006.08247.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn

from vidnet.network._registry import register_model
from vidnet.network.layers.conv_makers import (
    Conv2Plus1D,
    Conv3DDepthwise,
    Conv3DNoTemporal,
    Conv3DSimple,
    ConvMaker,
    IPConv3DDepthwise,
)
from vidnet.network.layers.init import init_video_weights_
from vidnet.network.layers.residual_blocks import BasicBlock, Bottleneck, SRPlace
from vidnet.network.layers.squeeze_recursion import SqueezeRecursion
from vidnet.network.layers.stems import BasicStem, R2Plus1dStem
from vidnet.network.layers.temporal_gate import TemporalCycleGate

__all__ = ["VideoResNet", "video_resnet", "DEPTHS", "CONV_MAKERS"]

DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
"""Block type and blocks per stage for each depth."""

CONV_MAKERS: dict[str, tuple[ConvMaker | tuple[ConvMaker, ...], type[nn.Module]]] = {
    "r3d": (Conv3DSimple, BasicStem),
    "mc3": ((Conv3DSimple, Conv3DNoTemporal, Conv3DNoTemporal, Conv3DNoTemporal), BasicStem),
    "r2plus1d": (Conv2Plus1D, R2Plus1dStem),
    "ir_csn": (Conv3DDepthwise, BasicStem),
    "ip_csn": (IPConv3DDepthwise, BasicStem),
}
"""Conv maker (or one per stage) and stem of each convolution family."""


class VideoResNet(nn.Module):
    """The shared video ResNet trunk; every option is injected.

    Args:
        block: residual block class (:class:`BasicBlock` or :class:`Bottleneck`).
        conv_maker: spatio-temporal convolution maker used inside the blocks, or one per stage (MC3: 3D in
            the first stage, 1x3x3 in the others). A maker whose ``temporal_stride`` is False strides its stage
            (and the stage's shortcut) over H and W only.
        stem: stem class (called with ``norm_layer=`` and ``act_layer=``).
        layers: blocks in each of the four stages.
        num_classes: classifier outputs.
        groups: convolution groups of the blocks (ResNeXt cardinality).
        width_per_group: inner width per group at 64 planes (128 with groups 1 gives the wide models).
        grouped_conv: pass ``groups`` to the convolutions (True) or only widen them, as the original did.
        sr_layer: ``sr_layer(channels) -> module`` placed in every residual block, or None (no recursion).
        sr_place: where in the block the SR layer goes (SRTG uses ``final``).
        norm_layer: normalisation layer factory.
        act_layer: activation layer factory.
        stem_pool: apply the 3x3x3 stride-2 max-pool after the stem (the original trunk does).
        dropout: dropout probability before the classifier.
        zero_init_residual: zero the last norm of each residual branch so every block starts as identity.
    """

    min_input = (4, 32, 32)
    """Smallest clip (T, H, W) to train on with a batch of 2. Inference accepts any clip (even 1x1x1); in
    training, stages 3-4 of a 1x16x16 clip hold one voxel, batch norm then sees 2 values per channel and the
    gradients of the 101+ layer models overflow to NaN."""

    def __init__(
        self,
        *,
        block: type[BasicBlock] | type[Bottleneck],
        conv_maker: ConvMaker | tuple[ConvMaker, ConvMaker, ConvMaker, ConvMaker],
        stem: Callable[..., nn.Module],
        layers: tuple[int, int, int, int] | list[int],
        num_classes: int = 400,
        groups: int = 1,
        width_per_group: int = 64,
        grouped_conv: bool = True,
        sr_layer: Callable[[int], nn.Module] | None = None,
        sr_place: SRPlace = "final",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm3d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        stem_pool: bool = True,
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must give four positive block counts, got {list(layers)}")
        self.stem = stem(norm_layer=norm_layer, act_layer=act_layer)
        self.pool = nn.MaxPool3d(3, stride=2, padding=1) if stem_pool else nn.Identity()
        makers = tuple(conv_maker) if isinstance(conv_maker, (tuple, list)) else (conv_maker,) * 4
        if len(makers) != 4:
            raise ValueError(f"conv_maker must be one maker or four (one per stage), got {len(makers)}")
        block_kw = {
            "groups": groups, "width_per_group": width_per_group,
            "grouped_conv": grouped_conv, "sr_layer": sr_layer, "sr_place": sr_place,
            "norm_layer": norm_layer, "act_layer": act_layer,
        }
        inplanes = 64
        for i, (planes, count, maker) in enumerate(zip((64, 128, 256, 512), layers, makers, strict=True)):
            stride = 1 if i == 0 else 2
            ds_stride = stride if getattr(maker, "temporal_stride", True) else (1, stride, stride)
            stage = []
            for j in range(count):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != planes * block.expansion):
                    downsample = nn.Sequential(
                        nn.Conv3d(inplanes, planes * block.expansion, 1, stride=ds_stride, bias=False),
                        norm_layer(planes * block.expansion),
                    )
                stage.append(block(inplanes, planes, stride=stride if j == 0 else 1, downsample=downsample,
                                   conv_maker=maker, **block_kw))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        init_video_weights_(self)
        if zero_init_residual:
            # The original referenced a nonexistent `bn3` here and crashed.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and getattr(m.last_norm(), "weight", None) is not None:
                    nn.init.zeros_(m.last_norm().weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stage-4 feature map ``B x 512 x T' x H' x W'`` of a clip ``B x 3 x T x H x W``."""
        x = self.pool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip B x C x T x H x W, got shape {tuple(x.shape)}")
        x = self.avgpool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))

    def remap_original_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a state dict saved by the original SRTG code (or torchvision's video ResNets) to this model's keys.

        The trunk keeps the original module layout, so the only renamed module is the SR block:
        ``layerS.B.sar.lstm.*`` -> ``layerS.B.sr.lstm.*``. torchvision's ``Conv3DSimple`` is the convolution
        itself rather than a container of one, so its ``layerS.B.convN.0.weight`` becomes
        ``layerS.B.convN.0.0.weight`` (torchvision's ``r3d_18``/``r2plus1d_18`` equal ours with
        ``stem_pool=False``; its ``mc3_18`` equals our ``mc3_18``). torchvision's (2+1)D convolutions already sit
        at our indices. Keys that match neither pass unchanged, for :func:`~vidnet.network.weights.load_weights`
        to report.
        """
        own = self.state_dict().keys()
        out = {}
        for key, value in state_dict.items():
            key = re.sub(r"\.sar\.", ".sr.", key)
            if key not in own:
                nested = re.sub(r"^(layer\d+\.\d+\.conv\d\.0)\.weight$", r"\1.0.weight", key)
                key = nested if nested in own else key
            out[key] = value
        return out


def video_resnet(
    *,
    num_classes: int = 400,
    conv: str = "r3d",
    model_depth: int = 18,
    groups: int = 1,
    width_per_group: int = 64,
    recursion: bool = False,
    gates: bool | None = None,
    sr_layers: int = 2,
    **options,
) -> VideoResNet:
    """Build a :class:`VideoResNet` from the settings a registry name binds.

    Args:
        num_classes: classifier outputs.
        conv: convolution family, one of ``r3d``, ``mc3``, ``r2plus1d``, ``ir_csn``, ``ip_csn``.
        model_depth: 18, 34, 50, 101, 152 or 200.
        groups: ResNeXt cardinality.
        width_per_group: inner width per group at 64 planes.
        recursion: add a Squeeze-and-Recursion layer to every residual block (the ``srtg_*`` names).
        gates: with recursion, gate each SR layer with the temporal cycle-consistency gate. The SRTG paper's
            models use the gate (the "TG" of SRTG), so it is on by default; the original code could not turn
            it on from its constructors, and its gate made SR a no-op. ``gates=False`` is plain SR, which is
            how the original's constructors (and its checkpoints) ran. None means "on with recursion".
        sr_layers: stacked LSTM layers in each SR layer.
        **options: further :class:`VideoResNet` options (``grouped_conv``, ``sr_place``, ``dropout``, ...).
    """
    if conv not in CONV_MAKERS:
        raise ValueError(f"unknown conv family {conv!r}; choose one of {', '.join(CONV_MAKERS)}")
    if model_depth not in DEPTHS:
        raise ValueError(f"unknown model_depth {model_depth}; choose one of {', '.join(map(str, DEPTHS))}")
    conv_maker, stem = CONV_MAKERS[conv]
    block, layers = DEPTHS[model_depth]
    if gates and not recursion:
        raise ValueError("gates=True needs recursion=True (the srtg_* models): there is no SR layer to gate")
    sr_layer = None
    if recursion:
        gates = True if gates is None else gates
        sr_layer = partial(SqueezeRecursion, num_layers=sr_layers, gate=TemporalCycleGate() if gates else None)
    return VideoResNet(block=block, conv_maker=conv_maker, stem=stem, layers=layers, num_classes=num_classes,
                       groups=groups, width_per_group=width_per_group, sr_layer=sr_layer, **options)


_PAPERS = {
    "r3d": "A Closer Look at Spatiotemporal Convolutions for Action Recognition (Tran et al., arXiv:1711.11248)",
    "r2plus1d": "A Closer Look at Spatiotemporal Convolutions for Action Recognition "
                "(Tran et al., arXiv:1711.11248)",
    "csn": "Video Classification with Channel-Separated Convolutional Networks (Tran et al., arXiv:1904.02811)",
    "xt": "Aggregated Residual Transformations for Deep Neural Networks (Xie et al., arXiv:1611.05431)",
    "wide": "Wide Residual Networks (Zagoruyko & Komodakis, arXiv:1605.07146)",
    "srtg": "Learn to cycle: Time-consistent feature discovery for action recognition "
            "(Stergiou & Poppe, arXiv:2006.08247)",
}


def _variants() -> list[tuple[str, str, str, int, dict, tuple[str, ...]]]:
    """(name, family, paper key, depth, trunk settings, aliases) of every plain (non-SRTG) name."""
    out = []
    for conv in ("r3d", "r2plus1d"):
        for depth in (18, 34, 50, 101, 152, 200):
            out.append((f"{conv}_{depth}", conv, conv, depth, {}, ()))
        out.append((f"{conv}xt34_32d", f"{conv}xt", "xt", 34, {"groups": 32, "width_per_group": 4}, ()))
        out.append((f"{conv}xt50_32x4d", f"{conv}xt", "xt", 50, {"groups": 32, "width_per_group": 4}, ()))
        out.append((f"{conv}xt101_32x8d", f"{conv}xt", "xt", 101, {"groups": 32, "width_per_group": 8}, ()))
        for depth in (50, 101):
            out.append((f"wide_{conv}{depth}_2", f"wide_{conv}", "wide", depth, {"width_per_group": 128}, ()))
    for conv in ("ir_csn", "ip_csn"):
        for depth in (50, 101, 152):
            out.append((f"{conv}_{depth}", conv, "csn", depth, {}, (f"{conv.replace('_', '')}_{depth}",)))
    return out


def _register_all() -> None:
    # MC3 exists publicly only in torchvision, whose trunk has no stem max-pool: mc3_18 follows it exactly.
    register_model("mc3_18", family="mc3", paper=_PAPERS["r3d"], depth="18", conv="mc3", model_depth=18,
                   stem_pool=False)(video_resnet)
    for name, family, paper, depth, settings, aliases in _variants():
        conv = family.removeprefix("wide_").removesuffix("xt")
        bound = {"conv": conv, "model_depth": depth, **settings}
        register_model(name, family=family, paper=_PAPERS[paper], depth=str(depth), aliases=aliases,
                       **bound)(video_resnet)
        register_model(f"srtg_{name}", family=f"srtg_{family}", paper=_PAPERS["srtg"], depth=str(depth),
                       aliases=tuple(f"srtg_{a}" for a in aliases), recursion=True, **bound)(video_resnet)


_register_all()
