"""X3D: a ResNet expanded along width, depth, frames and resolution, with channel-wise convolutions and SE.

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", arXiv:2004.04730.

One trunk for the four published sizes: XS, S and M share every weight (3,794,322 parameters at 400
classes) and differ only in the clip they are trained on (4x160^2, 13x160^2, 16x224^2); L is 5x deeper
(6,153,432). The counts equal the authors' PySlowFast code. The layout:

* stem: a 1x3x3 convolution (spatial stride 2) then a channel-wise 5x1x1 one, norm, ReLU;
* four stages of :class:`~vidnet.network.layers.bottleneck3d.Bottleneck3d` (1x1x1, channel-wise 3x3x3 with
  spatial stride 2 in each stage's first block, 1x1x1; inner width 2.25x the stage width), with
  Squeeze-and-Excitation (1/16) in every other block and swish after the channel-wise convolution;
* head: 1x1x1 convolution to the last inner width, norm, ReLU, global average pool, a 1x1x1 convolution to
  2048 (no norm), ReLU, dropout, classifier.

The reference code pools with a fixed ``AvgPool3d`` sized from the training clip; at that clip the final map
is exactly that size and the two agree. Here the pool is global, so any clip length and size works.

Checkpoints of the PySlowFast, PyTorchVideo (hub) and MMAction2 code load through
:func:`~vidnet.network.weights.load_weights` (see :meth:`X3D.remap_original_state_dict`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vidnet.network._registry import register_model
from vidnet.network.layers.bottleneck3d import BRANCH_BLOCK_RULES, MMACTION_BLOCK_RULES, Bottleneck3d, zero_last_norms_
from vidnet.network.layers.init import init_video_weights_
from vidnet.network.layers.squeeze_excitation import round_width
from vidnet.network.weights import KeyRule, rename_key

__all__ = ["X3D", "x3d", "X3D_SIZES"]

PAPER = "X3D: Expanding Architectures for Efficient Video Recognition (Feichtenhofer, arXiv:2004.04730)"

X3D_SIZES: dict[str, dict] = {
    "xs": {"depth_factor": 2.2, "clip": (4, 160, 160)},
    "s": {"depth_factor": 2.2, "clip": (13, 160, 160)},
    "m": {"depth_factor": 2.2, "clip": (16, 224, 224)},
    "l": {"depth_factor": 5.0, "clip": (16, 312, 312)},
}
"""Depth factor and training clip (frames, height, width) of each published size (width factor 2 for all)."""


class Swish(nn.Module):
    """``x * sigmoid(x)`` (X3D's inner activation; ``nn.SiLU`` computes the same)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class X3DStem(nn.Module):
    """1x3x3 convolution (stride 1x2x2), channel-wise 5x1x1 convolution, norm, ReLU."""

    def __init__(self, out_channels: int, *, temporal_kernel: int = 5) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(out_channels, out_channels, (temporal_kernel, 1, 1),
                                padding=(temporal_kernel // 2, 0, 0), groups=out_channels, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv_t(self.conv_xy(x))))


class X3D(nn.Module):
    """X3D network (see the module docstring).

    Args:
        num_classes: classifier outputs.
        width_factor: channel expansion of the stem and the stages (2.0 for every published size).
        depth_factor: block-count expansion of the base depths (1, 2, 5, 3): 2.2 for XS/S/M, 5.0 for L.
        bottleneck_factor: inner width of each block over the stage width (2.25).
        se_ratio: Squeeze-and-Excitation width over the inner width, in every other block (1/16).
        head_width: channels of the head's last convolution (2048).
        dropout: dropout before the classifier (0.5, as in the reference training).
    """

    min_input = (1, 32, 32)

    def __init__(
        self,
        *,
        num_classes: int = 400,
        width_factor: float = 2.0,
        depth_factor: float = 2.2,
        bottleneck_factor: float = 2.25,
        se_ratio: float = 0.0625,
        head_width: int = 2048,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        base = 12
        stem_width = round_width(base, width_factor)
        self.stem = X3DStem(stem_width)
        widths = [base]
        for _ in range(3):
            widths.append(round_width(widths[-1], 2.0))
        in_ch = stem_width
        for i, (w, depth) in enumerate(zip(widths, (1, 2, 5, 3), strict=True)):
            out_ch = round_width(w, width_factor)
            inner = int(bottleneck_factor * out_ch)
            blocks = []
            for j in range(int(math.ceil(depth_factor * depth))):
                se = round_width(inner, se_ratio) if se_ratio > 0 and j % 2 == 0 else 0
                blocks.append(Bottleneck3d(in_ch if j == 0 else out_ch, inner, out_ch,
                                           spatial_stride=2 if j == 0 else 1, temporal_kernel_b=3, groups=inner,
                                           se_reduced=se, inner_act=Swish))
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.conv5 = nn.Conv3d(in_ch, inner, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(inner)
        self.act5 = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.lin5 = nn.Conv3d(inner, head_width, 1, bias=False)
        self.act6 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(head_width, num_classes)
        init_video_weights_(self)
        zero_last_norms_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map ``B x C x T x H/32 x W/32`` of a clip ``B x 3 x T x H x W``."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip B x C x T x H x W, got shape {tuple(x.shape)}")
        x = self.avgpool(self.act5(self.bn5(self.conv5(self.features(x)))))
        x = self.act6(self.lin5(x)).flatten(1)
        return self.fc(self.dropout(x))

    def remap_original_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a PySlowFast, PyTorchVideo or MMAction2 X3D state dict to this model's keys.

        PySlowFast (``model_state`` of its checkpoints): ``s1.pathway0_stem.*``, ``s{2-5}.pathway0_res{j}.branch2.
        {a,b,c}[_bn]``, ``...branch1[_bn]``, ``head.{conv_5,conv_5_bn,lin_5,projection}``. PyTorchVideo (its hub
        files): ``blocks.0.conv.{conv_t,conv_xy}`` (named the other way round: ``conv_t`` is the spatial one),
        ``blocks.{1-4}.res_blocks.{j}.branch2.{conv,norm}_{a,b,c}`` with SE in ``norm_b.1.block.{0,2}``,
        ``blocks.5.pool.{pre,post}_conv``, ``blocks.5.proj``. PyTorchVideo has no norm on the first stage's
        shortcut (the width does not change there); an exact identity norm is supplied for it. MMAction2:
        ``backbone.conv1_{s,t}``, ``backbone.layerS.j.convN.{conv,bn}``, ``se_module``, ``backbone.conv5``, and
        ``cls_head.fc1`` (a linear layer: reshaped to the 1x1x1 convolution ``lin5``) and ``cls_head.fc2``.
        Unknown keys pass unchanged.
        """
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            key = rename_key(key, _X3D_RULES)
            if key == "lin5.weight" and value.dim() == 2:  # MMAction2's head applies it as a linear layer
                value = value[:, :, None, None, None]
            out[key] = value
        own = self.state_dict()
        shortcut = "layer1.0.downsample.1."
        if any(k.startswith("blocks.1.res_blocks.0.branch1_conv") for k in state_dict) and \
                not any(k.startswith(shortcut) for k in out):
            out.update(_identity_norm(own, shortcut, self.layer1[0].downsample[1].eps))
        return out


_X3D_RULES: list[KeyRule] = [
    # PySlowFast
    (r"^s1\.pathway0_stem\.conv_xy\.", "stem.conv_xy."),
    (r"^s1\.pathway0_stem\.conv\.", "stem.conv_t."),
    (r"^s1\.pathway0_stem\.bn\.", "stem.bn."),
    (r"^s(\d)\.pathway0_res(\d+)\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}."),
    (r"\.branch2\.se\.", ".se."),
    (r"^head\.conv_5\.", "conv5."),
    (r"^head\.conv_5_bn\.", "bn5."),
    (r"^head\.lin_5\.", "lin5."),
    (r"^head\.projection\.", "fc."),
    # PyTorchVideo
    (r"^blocks\.0\.conv\.conv_t\.", "stem.conv_xy."),
    (r"^blocks\.0\.conv\.conv_xy\.", "stem.conv_t."),
    (r"^blocks\.0\.norm\.", "stem.bn."),
    (r"^blocks\.([1-4])\.res_blocks\.(\d+)\.", lambda m: f"layer{m[1]}.{m[2]}."),
    (r"\.branch2\.norm_b\.0\.", ".bn2."),
    (r"\.branch2\.norm_b\.1\.block\.0\.", ".se.fc1."),
    (r"\.branch2\.norm_b\.1\.block\.2\.", ".se.fc2."),
    (r"^blocks\.5\.pool\.pre_conv\.", "conv5."),
    (r"^blocks\.5\.pool\.pre_norm\.", "bn5."),
    (r"^blocks\.5\.pool\.post_conv\.", "lin5."),
    (r"^blocks\.5\.proj\.", "fc."),
    # Both: their bottlenecks' branch names (after PyTorchVideo's norm_b, which also holds the SE)
    *BRANCH_BLOCK_RULES,
    # MMAction2 (ConvModule keeps its convolution and norm as .conv and .bn)
    (r"^backbone\.conv1_s\.conv\.", "stem.conv_xy."),
    (r"^backbone\.conv1_t\.conv\.", "stem.conv_t."),
    (r"^backbone\.conv1_t\.bn\.", "stem.bn."),
    (r"^backbone\.conv5\.conv\.", "conv5."),
    (r"^backbone\.conv5\.bn\.", "bn5."),
    (r"^backbone\.(layer\d\.\d+\.)", r"\1"),
    *MMACTION_BLOCK_RULES,
    (r"\.se_module\.", ".se."),
    (r"^cls_head\.fc1\.", "lin5."),
    (r"^cls_head\.fc2\.", "fc."),
]


def _identity_norm(own: dict[str, torch.Tensor], prefix: str, eps: float) -> dict[str, torch.Tensor]:
    """Batch-norm entries that compute exactly ``x``: unit weight, zero bias and mean, variance ``1 - eps``."""
    ref = own[prefix + "weight"]
    return {
        prefix + "weight": torch.ones_like(ref), prefix + "bias": torch.zeros_like(ref),
        prefix + "running_mean": torch.zeros_like(ref), prefix + "running_var": torch.full_like(ref, 1.0 - eps),
        prefix + "num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


def x3d(*, num_classes: int = 400, size: str = "m", **options) -> X3D:
    """Build X3D of a published size (``xs``, ``s``, ``m``, ``l``); ``options`` override :class:`X3D` settings."""
    if size not in X3D_SIZES:
        raise ValueError(f"unknown X3D size {size!r}; choose one of {', '.join(X3D_SIZES)}")
    options.setdefault("depth_factor", X3D_SIZES[size]["depth_factor"])
    return X3D(num_classes=num_classes, **options)


for _size in X3D_SIZES:
    register_model(f"x3d_{_size}", family="x3d", paper=PAPER, depth=_size, size=_size)(x3d)
