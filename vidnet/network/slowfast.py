"""SlowFast: a slow, wide pathway and a fast, thin one with lateral connections from fast to slow.

Feichtenhofer et al., "SlowFast Networks for Video Recognition", arXiv:1812.03982.

The model takes one clip ``B x 3 x T x H x W`` sampled at the fast pathway's rate; the slow pathway sees
``T // alpha`` of its frames (T a multiple of alpha), picked as the reference data pipeline picks them
(``linspace(0, T - 1, T // alpha)`` rounded down). A list ``[slow, fast]`` is accepted too, as the reference
code's models take it. Both pathways are ResNet-50/101 trunks of
:class:`~vidnet.network.layers.bottleneck3d.Bottleneck3d` blocks (spatial strides 1/2/2/2, no temporal
stride); the fast one has 1/8 of the channels (beta) and temporal kernels of 3 in every stage, the slow one only
in stages 4 and 5. After the stem and each of the first three stages a ``k x 1 x 1`` convolution with temporal
stride alpha (k = 7 for 8x8, 5 for 4x16 and R101) maps the fast features to twice their channels, which are
concatenated to the slow ones. Both pathways are globally averaged, concatenated, and classified after dropout.

Parameter counts equal the PySlowFast and PyTorchVideo code (34,566,488 for R50 8x8 at 400 classes).
Checkpoints of PySlowFast, PyTorchVideo (hub) and MMAction2 load through
:func:`~vidnet.network.weights.load_weights` (see :meth:`SlowFast.remap_original_state_dict`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from vidnet.network._registry import register_model
from vidnet.network.layers.bottleneck3d import BRANCH_BLOCK_RULES, MMACTION_BLOCK_RULES, Bottleneck3d, zero_last_norms_
from vidnet.network.layers.init import init_video_weights_
from vidnet.network.weights import KeyRule, rename_key

__all__ = ["SlowFast", "slowfast", "slow_frames"]

PAPER = "SlowFast Networks for Video Recognition (Feichtenhofer et al., arXiv:1812.03982)"

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


SlowSampling = Literal["linspace", "stride"]
LateralKind = Literal["conv_bn_relu", "conv"]


def slow_frames(num_frames: int, alpha: int, sampling: SlowSampling = "linspace") -> torch.Tensor:
    """Indices of the slow pathway's frames in a fast clip of ``num_frames``.

    ``linspace``: ``linspace(0, T - 1, T // alpha)`` rounded down (PySlowFast's and PyTorchVideo's pipelines);
    ``stride``: every alpha-th frame from the first (MMAction2's backbone, which subsamples by nearest
    interpolation).
    """
    if sampling == "stride":
        return torch.arange(num_frames // alpha) * alpha
    return torch.linspace(0, num_frames - 1, num_frames // alpha).long()


class Pathway(nn.Module):
    """A stem (conv ``t x 7 x 7`` stride 1x2x2, norm, ReLU, 1x3x3 max-pool stride 1x2x2) and four stages."""

    def __init__(self, *, width: int, in_widths: tuple[int, ...], stem_kernel_t: int, temporal_kernels: tuple[int, ...],
                 blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (stem_kernel_t, 7, 7), stride=(1, 2, 2), padding=(stem_kernel_t // 2, 3, 3),
                      bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        for i, (cin, kt, n) in enumerate(zip(in_widths, temporal_kernels, blocks, strict=True)):
            inner = width * 2**i
            out = inner * 4
            stage = [Bottleneck3d(cin if j == 0 else out, inner, out, spatial_stride=1 if i == 0 or j else 2,
                                  temporal_kernel_a=kt) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))


class FastToSlow(nn.Sequential):
    """Lateral connection: ``k x 1 x 1`` convolution with temporal stride alpha to twice the channels, then norm
    and ReLU (``kind="conv_bn_relu"``, the paper's code) or nothing more (``kind="conv"``, MMAction2's)."""

    def __init__(self, channels: int, *, kernel_t: int, alpha: int, ratio: int = 2,
                 kind: LateralKind = "conv_bn_relu") -> None:
        conv = nn.Conv3d(channels, channels * ratio, (kernel_t, 1, 1), stride=(alpha, 1, 1),
                         padding=(kernel_t // 2, 0, 0), bias=False)
        if kind == "conv":
            super().__init__(conv)
        elif kind == "conv_bn_relu":
            super().__init__(conv, nn.BatchNorm3d(channels * ratio), nn.ReLU())
        else:
            raise ValueError(f"lateral must be 'conv_bn_relu' or 'conv', got {kind!r}")


class SlowFast(nn.Module):
    """SlowFast network (see the module docstring).

    Args:
        num_classes: classifier outputs.
        model_depth: 50 or 101 (blocks per stage 3/4/6/3 or 3/4/23/3).
        alpha: frame-rate ratio between the pathways (4 for 8x8, 8 for 4x16).
        beta_inv: channel ratio slow/fast (8).
        fusion_kernel: temporal kernel of the lateral connections.
        fusion_ratio: channel expansion of the lateral connections (2).
        dropout: dropout before the classifier (0.5 in the reference training).
        lateral: ``conv_bn_relu`` (PySlowFast, PyTorchVideo) or ``conv`` (MMAction2's SlowFast, which has no
            norm or activation on the lateral connections: 928 parameters fewer).
        slow_sampling: how the slow pathway's frames are picked from the clip (see :func:`slow_frames`):
            ``linspace`` (PySlowFast, PyTorchVideo) or ``stride`` (MMAction2).
    """

    def __init__(
        self,
        *,
        num_classes: int = 400,
        model_depth: int = 50,
        alpha: int = 4,
        beta_inv: int = 8,
        fusion_kernel: int = 7,
        fusion_ratio: int = 2,
        dropout: float = 0.5,
        lateral: LateralKind = "conv_bn_relu",
        slow_sampling: SlowSampling = "linspace",
    ) -> None:
        super().__init__()
        if model_depth not in STAGE_BLOCKS:
            choices = ", ".join(map(str, STAGE_BLOCKS))
            raise ValueError(f"SlowFast model_depth must be one of {choices}, got {model_depth}")
        if slow_sampling not in ("linspace", "stride"):
            raise ValueError(f"slow_sampling must be 'linspace' or 'stride', got {slow_sampling!r}")
        self.alpha = alpha
        self.slow_sampling = slow_sampling
        self.min_input = (alpha, 32, 32)
        blocks = STAGE_BLOCKS[model_depth]
        slow_w, fast_w = 64, 64 // beta_inv
        fast_out = [fast_w, *(fast_w * 4 * 2**i for i in range(3))]  # stem and stages 1-3 of the fast pathway
        slow_out = [slow_w, *(slow_w * 4 * 2**i for i in range(3))]
        self.slow = Pathway(width=slow_w, in_widths=tuple(s + f * fusion_ratio for s, f in zip(slow_out, fast_out,
                                                                                                 strict=True)),
                            stem_kernel_t=1, temporal_kernels=(1, 1, 3, 3), blocks=blocks)
        self.fast = Pathway(width=fast_w, in_widths=tuple(fast_out), stem_kernel_t=5, temporal_kernels=(3, 3, 3, 3),
                            blocks=blocks)
        self.lateral = nn.ModuleList(FastToSlow(c, kernel_t=fusion_kernel, alpha=alpha, ratio=fusion_ratio,
                                                kind=lateral)
                                     for c in fast_out)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(slow_w * 32 + fast_w * 32, num_classes)
        init_video_weights_(self)
        zero_last_norms_(self)

    def pathways(self, x: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """``[slow, fast]`` inputs from a fast-rate clip (or the pair itself)."""
        if isinstance(x, (list, tuple)):
            if len(x) != 2:
                raise ValueError(f"expected [slow, fast] clips, got {len(x)} tensors")
            return list(x)
        if x.dim() != 5:
            raise ValueError(f"expected a clip B x C x T x H x W, got shape {tuple(x.shape)}")
        if x.shape[2] < self.alpha or x.shape[2] % self.alpha:
            # The lateral connections stride the fast pathway by alpha: T // alpha slow frames need T = k * alpha.
            raise ValueError(f"SlowFast needs a multiple of alpha={self.alpha} frames, got {x.shape[2]}")
        index = slow_frames(x.shape[2], self.alpha, self.slow_sampling).to(x.device)
        return [x.index_select(2, index), x]

    def features(self, x: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """The two last-stage maps ``[slow, fast]``."""
        slow, fast = self.pathways(x)
        slow, fast = self.slow.stem(slow), self.fast.stem(fast)
        for i in range(4):
            slow = torch.cat([slow, self.lateral[i](fast)], dim=1)
            slow = getattr(self.slow, f"layer{i + 1}")(slow)
            fast = getattr(self.fast, f"layer{i + 1}")(fast)
        return [slow, fast]

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        slow, fast = self.features(x)
        x = torch.cat([self.avgpool(slow).flatten(1), self.avgpool(fast).flatten(1)], dim=1)
        return self.fc(self.dropout(x))

    def remap_original_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a PySlowFast, PyTorchVideo or MMAction2 SlowFast state dict to this model's keys.

        PySlowFast: ``s1.pathway{0,1}_stem.{conv,bn}``, ``s{1-4}_fuse.{conv_f2s,bn}``,
        ``s{2-5}.pathway{p}_res{j}.branch2.{a,b,c}[_bn]`` and ``branch1[_bn]``, ``head.projection``.
        PyTorchVideo (hub): ``blocks.0.multipathway_blocks.{p}.{conv,norm}``,
        ``blocks.{0-3}.multipathway_fusion.{conv_fast_to_slow,norm}``,
        ``blocks.{1-4}.multipathway_blocks.{p}.res_blocks.{j}.branch2.{conv,norm}_{a,b,c}`` and
        ``branch1_{conv,norm}``, ``blocks.6.proj``. MMAction2 (build with ``lateral="conv", slow_sampling="stride"``
        for its function): ``backbone.{slow,fast}_path.conv1.{conv,bn}``, ``backbone.slow_path.conv1_lateral``
        and ``layerS_lateral``, ``backbone.{slow,fast}_path.layerS.j.convN.{conv,bn}``, ``cls_head.fc_cls``, whose
        input is ``[fast, slow]``: its columns are swapped to this model's ``[slow, fast]``. Unknown keys pass
        unchanged.
        """
        out = {}
        for key, value in state_dict.items():
            if key.startswith("cls_head.fc_cls.weight"):
                fast = self.fc.in_features - self.slow.layer4[-1].bn3.num_features
                value = torch.cat([value[:, fast:], value[:, :fast]], dim=1)
            out[rename_key(key, _SLOWFAST_RULES)] = value
        return out


def _path(p: str) -> str:
    return ("slow", "fast")[int(p)]


_SLOWFAST_RULES: list[KeyRule] = [
    # PySlowFast
    (r"^s1\.pathway([01])_stem\.conv\.", lambda m: f"{_path(m[1])}.stem.0."),
    (r"^s1\.pathway([01])_stem\.bn\.", lambda m: f"{_path(m[1])}.stem.1."),
    (r"^s([1-4])_fuse\.conv_f2s\.", lambda m: f"lateral.{int(m[1]) - 1}.0."),
    (r"^s([1-4])_fuse\.bn\.", lambda m: f"lateral.{int(m[1]) - 1}.1."),
    (r"^s([2-5])\.pathway([01])_res(\d+)\.", lambda m: f"{_path(m[2])}.layer{int(m[1]) - 1}.{m[3]}."),
    (r"^head\.projection\.", "fc."),
    # PyTorchVideo
    (r"^blocks\.0\.multipathway_blocks\.([01])\.conv\.", lambda m: f"{_path(m[1])}.stem.0."),
    (r"^blocks\.0\.multipathway_blocks\.([01])\.norm\.", lambda m: f"{_path(m[1])}.stem.1."),
    (r"^blocks\.([0-3])\.multipathway_fusion\.conv_fast_to_slow\.", lambda m: f"lateral.{m[1]}.0."),
    (r"^blocks\.([0-3])\.multipathway_fusion\.norm\.", lambda m: f"lateral.{m[1]}.1."),
    (r"^blocks\.([1-4])\.multipathway_blocks\.([01])\.res_blocks\.(\d+)\.",
     lambda m: f"{_path(m[2])}.layer{m[1]}.{m[3]}."),
    (r"^blocks\.6\.proj\.", "fc."),
    # MMAction2
    (r"^backbone\.(slow|fast)_path\.conv1\.conv\.", r"\1.stem.0."),
    (r"^backbone\.(slow|fast)_path\.conv1\.bn\.", r"\1.stem.1."),
    (r"^backbone\.slow_path\.conv1_lateral\.conv\.", "lateral.0.0."),
    (r"^backbone\.slow_path\.layer([1-3])_lateral\.conv\.", r"lateral.\1.0."),
    (r"^backbone\.(slow|fast)_path\.(layer\d)", r"\1.\2"),
    (r"^cls_head\.fc_cls\.", "fc."),
    *MMACTION_BLOCK_RULES,
    *BRANCH_BLOCK_RULES,
]


def slowfast(*, num_classes: int = 400, **options) -> SlowFast:
    """Build a :class:`SlowFast` (the registry binds depth, alpha and the fusion kernel per name)."""
    return SlowFast(num_classes=num_classes, **options)


for _name, _depth, _alpha, _kernel in (("slowfast_r50_4x16", 50, 8, 5), ("slowfast_r50_8x8", 50, 4, 7),
                                       ("slowfast_r101_8x8", 101, 4, 5)):
    register_model(_name, family="slowfast", paper=PAPER, depth=str(_depth), model_depth=_depth, alpha=_alpha,
                   fusion_kernel=_kernel)(slowfast)
