"""MTNet: multi-temporal convolutions with short and long streams.

Stergiou & Poppe, "Multi-Temporal Convolutions for Human Action Recognition in Videos", arXiv 2011.03949.

Every MTNet feature map is a pair of streams. The *short* stream holds a fraction ``rate`` (0.875) of the
channels at the stage's full frame rate and resolution; the *long* stream holds the rest at about half the
frames and half the height and width. An :class:`MTConv` convolves each stream and adds a lateral
connection from short to long: the short output is halved spatially, its frames are reduced by
similarity-based frame selection (:func:`frame_select_pool`), resized to the long output if the sizes still
differ, and projected by a 1x1x1 convolution. Each residual block ends with a GRU recurrence per stream that
rescales every frame's channels (squeeze over space, recur over time, multiply).

Parameter names equal the original implementation's (``layer1.0.conv1_1.conv_short.weight``,
``layer1.0.sr_short.op.weight_ih_l0``, ...), so a state dict saved by the original code loads unchanged:
:meth:`MTNet.remap_original_state_dict` is the identity on the key names.

Defects of the original that are fixed here (numbers refer to the SRTG reference, section 6):

* 20 - the lateral was resized on every call (a size comparison of a 3-element list with a 2-element one);
  it is now resized only when the sizes differ. Resizing to the same size is an exact copy, so outputs do
  not change.
* 21 - the long-stream norm was applied twice per forward, once to the long output and once to the lateral,
  updating the running statistics twice with different tensors and adding its bias twice. Here the
  lateral is added first and the sum is normalised once. This changes the function: ``legacy=True``
  restores the original double norm so that weights trained with the original code reproduce its logits.
* 22 - the tiny-map test before a block's downsample looked at the height twice and never at the width. It
  now checks both and only enlarges the dimensions that are too small (``legacy=True`` keeps the original
  height-only test that resizes to 3x3).
* 23 - frame selection needed at least 3 frames (a 2-frame clip crashed). Clips of 1 and 2 frames now run:
  with fewer than 3 frames no frame has two neighbours to be scored against, so the frames are averaged down
  to ``max(1, T // 2)`` instead.
* 17 - ``zero_init_residual=True`` referenced a missing ``bn3``; it now zeroes the last MTConv's norm weights.

Also beyond the original: spatial pooling and the recurrence's squeeze accept maps of height or width 1 (the
original failed on them), so any clip length and any frame size of at least 1x1 pixel runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _triple

from vidnet.network._registry import register_model
from vidnet.network.layers.init import init_video_weights_

__all__ = ["MTNet", "MTBlock", "MTConv", "SqueezeRecursionGRU", "frame_select_pool"]

_PAPER = "Multi-Temporal Convolutions for Human Action Recognition in Videos (arXiv 2011.03949)"

Streams = tuple[Tensor, Tensor]


def frame_select_pool(x: Tensor) -> Tensor:
    """Keep the ``T // 2`` frames most similar to their neighbours (the original's ``temporal_cossim_pool``).

    Frames are globally average-pooled over space; consecutive frames are compared by squared cosine
    similarity over channels (eps 1e-4); each inner frame ``j`` is scored by the mean of its two pair scores;
    the ``T // 2`` best-scoring frames are kept per sample, in temporal order.

    Args:
        x: ``B x C x T x H x W``.

    Returns:
        ``B x C x max(1, T // 2) x H x W``. With ``T < 3`` no frame has two neighbours, so the frames are
        averaged down to that length instead (``T == 1`` returns ``x`` unchanged).
    """
    b, c, t, h, w = x.shape
    if t < 3:
        return F.adaptive_avg_pool3d(x, (max(1, t // 2), h, w))
    pooled = F.avg_pool3d(x, kernel_size=(1, h, w)).flatten(2)  # B x C x T
    pair = F.cosine_similarity(pooled[..., :-1], pooled[..., 1:], dim=1, eps=1e-4).pow(2)  # B x (T-1)
    score = F.avg_pool1d(pair.unsqueeze(1), kernel_size=2, stride=1).squeeze(1)  # B x (T-2); frame j+1
    keep = torch.topk(score, k=t // 2, dim=-1, largest=True).indices + 1
    keep = torch.sort(keep, dim=-1).values
    return x.gather(2, keep[:, None, :, None, None].expand(b, c, keep.shape[1], h, w))


def _halve_space(x: Tensor) -> Tensor:
    # Average 2x2 spatial neighbourhoods; a dimension already of size 1 is left alone (the original's fixed
    # 2x2 kernel failed there).
    kh, kw = min(2, x.shape[-2]), min(2, x.shape[-1])
    if kh == 1 and kw == 1:
        return x
    return F.avg_pool3d(x, kernel_size=(1, kh, kw), stride=(1, kh, kw))


def _resize_like(x: Tensor, ref: Tensor) -> Tensor:
    if x.shape[2:] == ref.shape[2:]:
        return x
    return F.interpolate(x, size=tuple(ref.shape[2:]), mode="trilinear")


class SqueezeRecursionGRU(nn.Module):
    """Squeeze-and-recursion with a GRU: per-frame channel weights from a recurrence over time.

    Squeezes ``B x C x T x H x W`` to one ``C``-vector per frame (spatial mean), runs a 2-layer GRU over the
    ``T`` frames, and multiplies the input by the GRU outputs broadcast over space (no sigmoid, as in the
    original; the GRU output already lies in (-1, 1)).

    Args:
        channels: channel count of the stream (GRU input and hidden size).
        num_layers: stacked GRU layers.
    """

    def __init__(self, channels: int, num_layers: int = 2) -> None:
        super().__init__()
        self.op = nn.GRU(input_size=channels, hidden_size=channels, num_layers=num_layers)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        squeezed = F.avg_pool3d(x, kernel_size=(1, h, w), stride=1) if h * w > 1 else x
        seq = squeezed.flatten(2).permute(2, 0, 1)  # T x B x C
        out, _ = self.op(seq)
        return x * out.permute(1, 2, 0)[..., None, None]


class MTConv(nn.Module):
    """A convolution on a (short, long) stream pair with a short-to-long lateral connection.

    Channel split: ``groups_short = floor(groups * rate)`` (at least 1), ``groups_long = groups -
    groups_short`` (at least 1); ``in_short = floor(int(in * rate) / groups_short) * groups_short``,
    ``out_short = int(out * rate)``; the long stream gets the rest. Norms are BatchNorm3d, or GroupNorm with
    the stream's group count when ``groups > 1``. No activation inside.

    Args:
        in_planes: input channels of both streams together.
        out_planes: output channels of both streams together.
        kernel_size: kernel of both stream convolutions.
        rate: fraction of channels in the short stream.
        stride: stride of both stream convolutions.
        padding: padding of both stream convolutions.
        groups: convolution groups, split between the streams as above.
        lateral: build the short-to-long lateral connection.
        legacy: apply the long-stream norm twice (to the long output and to the lateral) as the original did;
            default normalises their sum once.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int | tuple[int, int, int],
        *,
        rate: float = 0.875,
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
        groups: int = 1,
        lateral: bool = True,
        legacy: bool = False,
    ) -> None:
        super().__init__()
        self.legacy = legacy
        groups_short = max(1, math.floor(groups * rate))
        groups_long = max(1, groups - groups_short)
        self.in_planes_short = math.floor(int(in_planes * rate) / groups_short) * groups_short
        self.in_planes_long = in_planes - self.in_planes_short
        self.out_planes_short = int(out_planes * rate)
        self.out_planes_long = out_planes - self.out_planes_short
        kernel_size, stride, padding = _triple(kernel_size), _triple(stride), _triple(padding)

        self.conv_short = nn.Conv3d(
            self.in_planes_short, self.out_planes_short, kernel_size, stride, padding, groups=groups_short, bias=False
        )
        self.conv_long = nn.Conv3d(
            self.in_planes_long, self.out_planes_long, kernel_size, stride, padding, groups=groups_long, bias=False
        )
        self.conv_short2long = (
            nn.Conv3d(self.out_planes_short, self.out_planes_long, kernel_size=1, bias=False) if lateral else None
        )
        if groups > 1:
            self.norm_short: nn.Module = nn.GroupNorm(groups_short, self.out_planes_short)
            self.norm_long: nn.Module = nn.GroupNorm(groups_long, self.out_planes_long)
        else:
            self.norm_short = nn.BatchNorm3d(self.out_planes_short)
            self.norm_long = nn.BatchNorm3d(self.out_planes_long)

    def forward(self, x: Streams) -> Streams:
        x_short, x_long = x
        y_short = self.conv_short(x_short)
        y_long = self.conv_long(x_long)
        if self.conv_short2long is None:
            return self.norm_short(y_short), self.norm_long(y_long)

        lateral = _halve_space(y_short)
        if lateral.shape[2] > 2:
            lateral = frame_select_pool(lateral)
        lateral = self.conv_short2long(_resize_like(lateral, y_long))
        if self.legacy:
            return self.norm_short(y_short), self.norm_long(y_long) + self.norm_long(lateral)
        return self.norm_short(y_short), self.norm_long(y_long + lateral)


class MTBlock(nn.Module):
    """MTNet residual block on a (short, long) stream pair.

    1x1x1 ``in -> width`` and ``width -> in`` MTConvs, a 3x3x3 ``in -> width`` MTConv carrying the stride and
    groups, then ``width -> planes`` (1x1x1 in a downsampling block, else 1x3x3), each but the last followed by
    ReLU; a GRU squeeze-and-recursion per stream; residual add and ReLU.

    Args:
        inplanes: input channels (both streams).
        planes: output channels (both streams).
        stride: stride of the 3x3x3 MTConv (time and space).
        downsample: MTConv applied to the identity, or None.
        groups: groups of the last two MTConvs.
        base_width: width per group scale; ``width = int(planes * base_width / 64 / groups)``.
        rate: short-stream channel fraction.
        legacy: original behaviours kept for checkpoint parity (see the module docstring).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: MTConv | None = None,
        groups: int = 1,
        base_width: int = 64,
        rate: float = 0.875,
        legacy: bool = False,
    ) -> None:
        super().__init__()
        self.legacy = legacy
        width = int(planes * (base_width / 64.0) / groups)
        common = {"rate": rate, "legacy": legacy}
        self.conv1_1 = MTConv(inplanes, width, 1, **common)
        self.conv1_2 = MTConv(width, inplanes, 1, **common)
        self.conv2 = MTConv(inplanes, width, 3, stride=stride, padding=1, groups=groups, **common)
        if downsample is not None:
            self.conv3 = MTConv(width, planes, 1, groups=groups, **common)
        else:
            self.conv3 = MTConv(width, planes, (1, 3, 3), padding=(0, 1, 1), groups=groups, **common)
        self.downsample = downsample
        self.sr_short = SqueezeRecursionGRU(int(planes * rate))
        self.sr_long = SqueezeRecursionGRU(int(planes * (1 - rate)))

    def _enlarge_tiny(self, x: Tensor) -> Tensor:
        # The original enlarges a long identity smaller than 3 pixels before the strided 1x1x1 downsample, so
        # the stride does not collapse it to one pixel; the output is resized to the block's output anyway.
        t, h, w = x.shape[2:]
        if self.legacy:
            return F.interpolate(x, size=(t, 3, 3), mode="trilinear") if h < 3 else x
        if h < 3 or w < 3:
            return F.interpolate(x, size=(t, max(h, 3), max(w, 3)), mode="trilinear")
        return x

    def forward(self, x: Streams) -> Streams:
        identity_short, identity_long = x
        out = x
        for conv in (self.conv1_1, self.conv1_2, self.conv2):
            out = tuple(F.relu(o, inplace=True) for o in conv(out))
        out_short, out_long = self.conv3(out)

        if self.downsample is not None:
            identity_short, identity_long = self.downsample((identity_short, self._enlarge_tiny(identity_long)))
        identity_short = _resize_like(identity_short, out_short)
        identity_long = _resize_like(identity_long, out_long)

        out_short = F.relu(self.sr_short(out_short) + identity_short, inplace=True)
        out_long = F.relu(self.sr_long(out_long) + identity_long, inplace=True)
        return out_short, out_long


class MTNet(nn.Module):
    """Multi-temporal network: a 3D stem, four stages of :class:`MTBlock` on short/long streams, linear head.

    Stem: Conv 3->64 k(3,7,7) s(1,2,2) -> BN -> ReLU; replicate-pad one pixel on the leading side of H and W
    when either is odd; MaxPool k(1,3,3) s(1,2,2); frame selection (T -> T//2); split 56 short / 8 long
    channels; the long stream is halved spatially and (when it has more than 2 frames) frame-selected again.
    Stages: planes 64/128/256/512, strides 1/2/2/2. Head: global average of each stream, concatenated
    (512 features), linear classifier. Any clip length (including 1 and 2 frames) and frame size runs.

    Args:
        layers: blocks per stage.
        num_classes: classifier outputs.
        groups: groups of the grouped MTConvs (8 for the ``_g8`` models; GroupNorm in those).
        width_per_group: width scale of the blocks (64 = planes).
        zero_init_residual: zero the last norm of every block so that each block starts as the identity.
        rate: short-stream channel fraction.
        legacy: reproduce the original's double-applied long-stream norm and its height-only tiny-map
            test, to get the original's outputs from its checkpoints. Default False.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        *,
        num_classes: int = 400,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        rate: float = 0.875,
        legacy: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"MTNet needs four positive stage depths, got {list(layers)}")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"MTNet rate must lie in (0, 1), got {rate}")
        self.rate = rate
        self.legacy = legacy
        self.groups = groups
        self.base_width = width_per_group
        self.inplanes = 64
        self.init_planes_short = int(self.inplanes * rate)
        self.init_planes_long = self.inplanes - self.init_planes_short

        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512 * MTBlock.expansion, num_classes)
        self._initialise_weights(zero_init_residual)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * MTBlock.expansion:
            downsample = MTConv(
                self.inplanes, planes * MTBlock.expansion, 1, rate=self.rate, stride=stride, lateral=False
            )
        common = {"groups": self.groups, "base_width": self.base_width, "rate": self.rate, "legacy": self.legacy}
        stage = [MTBlock(self.inplanes, planes, stride=stride, downsample=downsample, **common)]
        self.inplanes = planes * MTBlock.expansion
        stage += [MTBlock(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _initialise_weights(self, zero_init_residual: bool) -> None:
        init_video_weights_(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, MTBlock):
                    nn.init.zeros_(m.conv3.norm_short.weight)
                    nn.init.zeros_(m.conv3.norm_long.weight)

    def forward_features(self, x: Tensor) -> Streams:
        """Stem and the four stages: the (short, long) stream pair before pooling."""
        x = self.stem(x)
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            x = F.pad(x, (1, 0, 1, 0, 0, 0), mode="replicate")
        x = frame_select_pool(self.pool(x))
        x_short, x_long = torch.split(x, [self.init_planes_short, self.init_planes_long], dim=1)
        x_long = _halve_space(x_long)
        if x_long.shape[2] > 2:
            x_long = frame_select_pool(x_long)
        streams = (x_short, x_long)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            streams = stage(streams)
        return streams

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``B x num_classes`` for clips ``B x 3 x T x H x W``."""
        x_short, x_long = self.forward_features(x)
        feats = torch.cat([self.avgpool(x_short), self.avgpool(x_long)], dim=1).flatten(1)
        return self.fc(feats)

    def remap_original_state_dict(self, sd: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map a state dict saved by the original MTNet code to this model's keys.

        The parameter names were kept identical to the original's, so the keys pass through unchanged
        (``module.`` prefixes are the weight loader's business). Load such weights into a model built with
        ``legacy=True`` to reproduce the original's outputs: they were trained with its double-applied
        long-stream norm.
        """
        return dict(sd)


_SIZES: dict[str, tuple[int, int, int, int]] = {
    "xs": (2, 2, 2, 2),
    "s": (2, 2, 5, 3),
    "m": (3, 4, 6, 3),
    "l": (3, 4, 23, 3),
    "xl": (3, 8, 36, 3),
    "xxl": (3, 24, 36, 3),
}
_GROUPED_SIZES = ("xs", "s", "m", "l")  # the original defines _g8 variants of these only


def _build_mtnet(num_classes: int = 400, *, layers: tuple[int, int, int, int], **options) -> MTNet:
    return MTNet(layers, num_classes=num_classes, **options)


for _size, _layers in _SIZES.items():
    register_model(f"mtnet_{_size}", family="mtnet", paper=_PAPER, depth=_size, aliases=(f"MTNet_{_size}",),
                   layers=_layers)(_build_mtnet)
    if _size in _GROUPED_SIZES:
        register_model(f"mtnet_{_size}_g8", family="mtnet", paper=_PAPER, depth=_size,
                       aliases=(f"MTNet_{_size}_g8",), layers=_layers, groups=8)(_build_mtnet)
