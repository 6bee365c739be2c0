"""Resource-efficient 3D CNNs: 3D SqueezeNet, MobileNet v1/v2 and ShuffleNet v1/v2.

Köpüklü et al., "Resource Efficient 3D Convolutional Neural Networks", ICCVW 2019, arXiv 1904.02422.

The layer layout and the state-dict key names are those of the authors' code (okankop/Efficient-3DCNNs), so
its checkpoints load directly (ShuffleNet v2 needs :meth:`ShuffleNetV23D.remap_original_state_dict` for the
original's ``banch1``/``banch2`` typo). Parameter counts equal the measured code for every width the
original builds. All 17 efficient-model rows of the published Table 8 agree with the code; for its ResNet
rows, where they do not, the code is followed (see :mod:`vidnet.network.hara_resnet`).

Differences from the original, all of which leave the output at its training shape (16x112x112) unchanged:

* Every model ends in a global average pool, so any clip length and frame size works. The original
  SqueezeNet built a fixed ``AvgPool3d((ceil(T/16), ceil(S/32), ceil(S/32)))`` from the training
  ``sample_duration``/``sample_size``; at the training shape its final map is exactly that size, so the two
  agree. MobileNet v2 and ShuffleNet v2 also drop the ``sample_size % 16 == 0`` assertion.
* ShuffleNet v1's stride-2 shortcut (``AvgPool3d((2, 3, 3), stride 2)``) gives a different temporal size than
  the strided branch for odd T, and fails for T = 1; an odd temporal size is padded by repeating the last
  frame first, which for even T is a no-op.
* ShuffleNet v1 with 2, 4 or 8 groups builds at every width (see :class:`ShuffleNet3D` for the rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import UsageError
from vidnet.network._registry import register_model
from vidnet.network.layers.init import init_video_weights_

__all__ = ["SqueezeNet3D", "MobileNet3D", "MobileNetV23D", "ShuffleNet3D", "ShuffleNetV23D", "shufflenet_widths"]

PAPER = "Köpüklü et al., Resource Efficient 3D Convolutional Neural Networks, arXiv 1904.02422"


def _conv_bn_act(cin: int, cout: int, stride: tuple[int, int, int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    # Sequential indices 0/1 give the original keys `<name>.0.weight`, `<name>.1.running_mean`, ...
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        act(inplace=True),
    )


def _pw_bn_act(cin: int, cout: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, kernel_size=1, bias=False), nn.BatchNorm3d(cout), act(inplace=True))


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, t, h, w = x.shape
    return x.view(n, groups, c // groups, t, h, w).transpose(1, 2).reshape(n, c, t, h, w)


class _PooledLinearHead(nn.Module):
    """Base of the models whose head is global average pool, dropout, linear (keys ``classifier.1.*``).

    The original pools with ``F.avg_pool3d(x, x.size()[-3:])``, i.e. globally, like this one.
    """

    def _build_head(self, cin: int, num_classes: int, dropout: float) -> None:
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(x).flatten(1))


def _check_width(width_mult: float, model: str, smallest: int) -> None:
    # `smallest` is the narrowest layer at 1.0x; below 1/smallest it would get zero channels.
    if not int(smallest * width_mult) >= 1:
        raise UsageError(f"{model}: width_mult must be at least 1/{smallest}, got {width_mult}")


class Fire3D(nn.Module):
    """SqueezeNet Fire module in 3D with batch norm; ``bypass`` adds the input (simple bypass of the paper)."""

    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int, *, bypass: bool = False) -> None:
        super().__init__()
        self.bypass = bypass
        self.squeeze = nn.Conv3d(cin, squeeze, kernel_size=1)
        self.squeeze_bn = nn.BatchNorm3d(squeeze)
        self.expand1x1 = nn.Conv3d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_bn = nn.BatchNorm3d(expand1x1)
        self.expand3x3 = nn.Conv3d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_bn = nn.BatchNorm3d(expand3x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat([self.expand1x1_bn(self.expand1x1(s)), self.expand3x3_bn(self.expand3x3(s))], 1)
        if self.bypass:
            out = out + x
        return F.relu(out)


class SqueezeNet3D(nn.Module):
    """3D SqueezeNet 1.0 or 1.1 with batch norm and simple bypass on every second Fire module.

    1.0 has a 7x7x7, 96-channel stem; 1.1 a 3x3x3, 64-channel stem and earlier pooling (about 6x fewer MACs).
    The classifier is dropout, a 1x1x1 convolution to the classes, ReLU and a global average pool (the
    original's fixed-size ``AvgPool3d`` equals it at the training shape).

    Args:
        version: ``"1.0"`` or ``"1.1"``.
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout before the classifier convolution.
    """

    def __init__(self, *, version: str = "1.1", num_classes: int = 400, in_channels: int = 3,
                 dropout: float = 0.5) -> None:
        super().__init__()
        version = str(version)
        pool = dict(kernel_size=3, stride=2, padding=1)
        if version == "1.0":
            layers: list[nn.Module] = [
                nn.Conv3d(in_channels, 96, kernel_size=7, stride=(1, 2, 2), padding=3),
                nn.BatchNorm3d(96), nn.ReLU(inplace=True), nn.MaxPool3d(**pool),
                Fire3D(96, 16, 64, 64), Fire3D(128, 16, 64, 64, bypass=True), nn.MaxPool3d(**pool),
                Fire3D(128, 32, 128, 128), Fire3D(256, 32, 128, 128, bypass=True), nn.MaxPool3d(**pool),
                Fire3D(256, 48, 192, 192), Fire3D(384, 48, 192, 192, bypass=True), Fire3D(384, 64, 256, 256),
                nn.MaxPool3d(**pool), Fire3D(512, 64, 256, 256, bypass=True),
            ]
        elif version == "1.1":
            layers = [
                nn.Conv3d(in_channels, 64, kernel_size=3, stride=(1, 2, 2), padding=1),
                nn.BatchNorm3d(64), nn.ReLU(inplace=True), nn.MaxPool3d(**pool),
                Fire3D(64, 16, 64, 64), Fire3D(128, 16, 64, 64, bypass=True), nn.MaxPool3d(**pool),
                Fire3D(128, 32, 128, 128), Fire3D(256, 32, 128, 128, bypass=True), nn.MaxPool3d(**pool),
                Fire3D(256, 48, 192, 192), Fire3D(384, 48, 192, 192, bypass=True), nn.MaxPool3d(**pool),
                Fire3D(384, 64, 256, 256), Fire3D(512, 64, 256, 256, bypass=True),
            ]
        else:
            raise UsageError(f"squeezenet_3d: version must be '1.0' or '1.1', got {version!r}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Conv3d(512, num_classes, kernel_size=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d(1),
        )
        init_video_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)


class DepthwiseSeparable3D(nn.Module):
    """MobileNet v1 block: depthwise 3x3x3 conv, BN, ReLU, pointwise conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cin, kernel_size=3, stride=stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm3d(cin)
        self.conv2 = nn.Conv3d(cin, cout, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MobileNet3D(_PooledLinearHead):
    """3D MobileNet v1: a (1,2,2)-strided stem and 13 depthwise-separable blocks, 4 of them strided (2,2,2).

    Channels are ``int(c * width_mult)`` without rounding, as in the original.

    Args:
        width_mult: channel multiplier (the paper uses 0.5, 1.0, 1.5, 2.0; any positive value builds).
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout before the classifier (0.2; the original fine-tuning replaces it with 0.9).
    """

    # (output channels, repeats, stride of the first repeat)
    SETTINGS = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 1))

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 400, in_channels: int = 3,
                 dropout: float = 0.2) -> None:
        _check_width(width_mult, "mobilenet_3d", 32)
        cin = int(32 * width_mult)
        features: list[nn.Module] = [_conv_bn_act(in_channels, cin, (1, 2, 2))]
        for c, n, s in self.SETTINGS:
            cout = int(c * width_mult)
            for i in range(n):
                features.append(DepthwiseSeparable3D(cin, cout, s if i == 0 else 1))
                cin = cout
        super().__init__()
        self.features = nn.Sequential(*features)
        self._build_head(cin, num_classes, dropout)
        init_video_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InvertedResidual3D(nn.Module):
    """MobileNet v2 block: (pointwise expansion,) depthwise 3x3x3, linear pointwise projection, residual."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv3d(cin, hidden, 1, bias=False), nn.BatchNorm3d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv3d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm3d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv3d(hidden, cout, 1, bias=False), nn.BatchNorm3d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV23D(_PooledLinearHead):
    """3D MobileNet v2: 17 inverted-residual blocks and a 1x1x1 conv to ``last_channel``.

    As in the original, channels are ``int(c * width_mult)`` (no rounding to multiples of 8) and the last
    conv keeps 1280 channels for ``width_mult <= 1`` (``int(1280 * width_mult)`` above).

    Args:
        width_mult: channel multiplier (the paper uses 0.2, 0.45, 0.7, 1.0).
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout before the classifier.
    """

    # (expansion, output channels, repeats, stride of the first repeat)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 400, in_channels: int = 3,
                 dropout: float = 0.2) -> None:
        _check_width(width_mult, "mobilenetv2_3d", 16)
        cin = int(32 * width_mult)
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        features: list[nn.Module] = [_conv_bn_act(in_channels, cin, (1, 2, 2), nn.ReLU6)]
        for t, c, n, s in self.SETTINGS:
            cout = int(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual3D(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_pw_bn_act(cin, last, nn.ReLU6))
        super().__init__()
        self.features = nn.Sequential(*features)
        self._build_head(last, num_classes, dropout)
        init_video_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


_SHUFFLENET_STAGES = {1: (144, 288, 567), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                      8: (384, 768, 1536)}


def _ceil_to(x: int, m: int) -> int:
    return max(m, -(-x // m) * m)


def shufflenet_widths(groups: int, width_mult: float) -> tuple[int, tuple[int, int, int]]:
    """Stem and stage widths of ShuffleNet v1 (3D) for a group count and width.

    The original takes ``int(c * width_mult)`` of the stem (24) and the stage widths, which for 2, 4 and 8
    groups at widths 0.25/0.5/1.5 leaves channel counts that the grouped convolutions cannot split, so it
    fails to build. Here a count that does not divide is rounded *up*: a stage width to a multiple of
    ``4 * groups`` (its bottleneck is a quarter of it, and both go through ``groups``-grouped convs), the stem
    to a multiple of ``groups``. Counts that already divide are left alone, so every configuration the
    original builds (all of groups 1 and 3, and 1.0x/2.0x for 2, 4, 8) keeps its exact size.

    Returns:
        ``(stem, (stage2, stage3, stage4))`` output channels.
    """
    if groups not in _SHUFFLENET_STAGES:
        raise UsageError(f"shufflenet_3d: groups must be one of {sorted(_SHUFFLENET_STAGES)}, got {groups}")
    _check_width(width_mult, "shufflenet_3d", 24)
    stem = int(24 * width_mult)
    # A stem of exactly 24 feeds an ungrouped conv (see ShuffleUnit3D), so it never needs rounding.
    if stem != 24 and stem % groups:
        stem = _ceil_to(stem, groups)
    stages = []
    for c in _SHUFFLENET_STAGES[groups]:
        c = int(c * width_mult)
        if c % groups or (c // 4) % groups:
            c = _ceil_to(c, 4 * groups)
        stages.append(c)
    return stem, tuple(stages)


class _TemporalEvenAvgPool(nn.Module):
    """ShuffleNet v1's shortcut ``AvgPool3d((2,3,3), stride 2, pad (0,1,1))`` made to match the strided branch.

    For odd T the strided 3x3x3 conv gives ``(T+1)/2`` frames and the pool ``(T-1)/2`` (nothing at T = 1), so
    the concatenation fails; repeating the last frame first makes both ``ceil(T/2)`` and changes nothing for
    even T. The spatial zero padding is applied explicitly (the same average, as the original counts padded
    zeros) because ``avg_pool3d`` rejects maps smaller than its kernel before padding (H or W < 3).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(kernel_size=(2, 3, 3), stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] % 2:
            x = torch.cat([x, x[:, :, -1:]], dim=2)
        return self.pool(F.pad(x, (1, 1, 1, 1)))


class ShuffleUnit3D(nn.Module):
    """ShuffleNet v1 unit: grouped 1x1x1, channel shuffle, depthwise 3x3x3, grouped 1x1x1; add or concat."""

    def __init__(self, cin: int, cout: int, *, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.groups = groups
        mid = cout // 4
        if stride == 2:
            cout -= cin  # the pooled input is concatenated
        # Kept from the original: the first pointwise conv is ungrouped when its input is the 24-channel stem.
        g1 = 1 if cin == 24 else groups
        self.conv1 = nn.Conv3d(cin, mid, kernel_size=1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, cout, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm3d(cout)
        self.shortcut = _TemporalEvenAvgPool() if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.groups)
        out = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        if self.shortcut is not None:
            return F.relu(torch.cat([out, self.shortcut(x)], 1))
        return F.relu(out + x)


class ShuffleNet3D(_PooledLinearHead):
    """3D ShuffleNet v1: stem, max-pool, three stages of 4/8/4 shuffle units.

    Widths come from :func:`shufflenet_widths`: the original's ``int(c * width_mult)`` wherever the original
    builds, rounded up to multiples of the group count where it does not (groups 2/4/8 at 0.25x/0.5x/1.5x).

    Args:
        groups: 1, 2, 3, 4 or 8 groups of the pointwise convolutions (the paper uses 3).
        width_mult: channel multiplier.
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout before the classifier.
    """

    def __init__(self, *, groups: int = 3, width_mult: float = 1.0, num_classes: int = 400, in_channels: int = 3,
                 dropout: float = 0.2) -> None:
        stem, stages = shufflenet_widths(groups, width_mult)
        super().__init__()
        self.conv1 = _conv_bn_act(in_channels, stem, (1, 2, 2))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        cin = stem
        for idx, (cout, n) in enumerate(zip(stages, (4, 8, 4), strict=True), start=1):
            units = []
            for i in range(n):
                units.append(ShuffleUnit3D(cin, cout, stride=2 if i == 0 else 1, groups=groups))
                cin = cout
            setattr(self, f"layer{idx}", nn.Sequential(*units))
        self._build_head(cin, num_classes, dropout)
        init_video_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.head(self.layer3(self.layer2(self.layer1(x))))


_SHUFFLENETV2_STAGES = {0.25: (32, 64, 128, 1024), 0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
                        1.5: (176, 352, 704, 1024), 2.0: (224, 488, 976, 2048)}


class ShuffleV2Unit3D(nn.Module):
    """ShuffleNet v2 unit: channel split (stride 1) or two strided branches (stride 2), concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 1:
            self.branch1 = None
            b2_in = half
        else:
            self.branch1 = nn.Sequential(
                nn.Conv3d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm3d(cin),
                nn.Conv3d(cin, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True),
            )
            b2_in = cin
        self.branch2 = nn.Sequential(
            nn.Conv3d(b2_in, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True),
            nn.Conv3d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm3d(half),
            nn.Conv3d(half, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            half = x.shape[1] // 2
            out = torch.cat([x[:, :half], self.branch2(x[:, half:])], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return _channel_shuffle(out, 2)


class ShuffleNetV23D(nn.Module):
    """3D ShuffleNet v2: stem, max-pool, 4/8/4 units, 1x1x1 conv to 1024 (2048 at 2.0x), classifier.

    Only the widths of the original's lookup table exist (0.25, 0.5, 1.0, 1.5, 2.0): ShuffleNet v2's stage
    widths are not a uniform multiple of one base.

    The original spells the branches ``banch1``/``banch2``; vidnet names them ``branch1``/``branch2`` and
    :meth:`remap_original_state_dict` converts original checkpoints.

    Args:
        width_mult: one of 0.25, 0.5, 1.0, 1.5, 2.0.
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout before the classifier.
    """

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 400, in_channels: int = 3,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if width_mult not in _SHUFFLENETV2_STAGES:
            raise UsageError(
                f"shufflenetv2_3d: width_mult must be one of {sorted(_SHUFFLENETV2_STAGES)}, got {width_mult}"
            )
        *stages, last = _SHUFFLENETV2_STAGES[width_mult]
        self.conv1 = _conv_bn_act(in_channels, 24, (1, 2, 2))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        units: list[nn.Module] = []
        cin = 24
        for cout, n in zip(stages, (4, 8, 4), strict=True):
            for i in range(n):
                units.append(ShuffleV2Unit3D(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*units)
        self.conv_last = _pw_bn_act(cin, last)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_video_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.features(self.maxpool(self.conv1(x))))
        return self.classifier(self.pool(x).flatten(1))

    def remap_original_state_dict(self, sd: dict) -> dict:
        """Rename the original's ``features.N.banch1.*``/``banch2.*`` keys to ``branch1``/``branch2``."""
        return {k.replace(".banch1.", ".branch1.").replace(".banch2.", ".branch2."): v for k, v in sd.items()}


def _register(name: str, builder: Callable[..., nn.Module], depth: str, **defaults) -> None:
    register_model(name, family="efficient3d", paper=PAPER, depth=depth, **defaults)(builder)


def squeezenet_3d(*, num_classes: int = 400, version: str = "1.1", **kwargs) -> SqueezeNet3D:
    """3D SqueezeNet (``version`` "1.0" or "1.1")."""
    return SqueezeNet3D(version=version, num_classes=num_classes, **kwargs)


def mobilenet_3d(*, num_classes: int = 400, width_mult: float = 1.0, **kwargs) -> MobileNet3D:
    """3D MobileNet v1 at ``width_mult``."""
    return MobileNet3D(width_mult=width_mult, num_classes=num_classes, **kwargs)


def mobilenetv2_3d(*, num_classes: int = 400, width_mult: float = 1.0, **kwargs) -> MobileNetV23D:
    """3D MobileNet v2 at ``width_mult``."""
    return MobileNetV23D(width_mult=width_mult, num_classes=num_classes, **kwargs)


def shufflenet_3d(*, num_classes: int = 400, groups: int = 3, width_mult: float = 1.0, **kwargs) -> ShuffleNet3D:
    """3D ShuffleNet v1 with ``groups`` at ``width_mult``."""
    return ShuffleNet3D(groups=groups, width_mult=width_mult, num_classes=num_classes, **kwargs)


def shufflenetv2_3d(*, num_classes: int = 400, width_mult: float = 1.0, **kwargs) -> ShuffleNetV23D:
    """3D ShuffleNet v2 at ``width_mult``."""
    return ShuffleNetV23D(width_mult=width_mult, num_classes=num_classes, **kwargs)


def _w(width: float) -> str:
    return f"{round(width * 100):03d}"


_register("squeezenet1_0_3d", squeezenet_3d, "1.0", version="1.0")
_register("squeezenet1_1_3d", squeezenet_3d, "1.1", version="1.1")
# The base names are the 1.0x models; the other widths of the paper's Table 8 get explicit names
# (`mobilenetv2_3d_045` = 0.45x). Any other width is a `width_mult=` option of the base name.
_register("mobilenet_3d", mobilenet_3d, "1.0x", width_mult=1.0)
for _wm in (0.5, 1.5, 2.0):
    _register(f"mobilenet_3d_{_w(_wm)}", mobilenet_3d, f"{_wm}x", width_mult=_wm)
_register("mobilenetv2_3d", mobilenetv2_3d, "1.0x", width_mult=1.0)
for _wm in (0.2, 0.45, 0.7):
    _register(f"mobilenetv2_3d_{_w(_wm)}", mobilenetv2_3d, f"{_wm}x", width_mult=_wm)
_register("shufflenet_3d", shufflenet_3d, "g3_1.0x", groups=3, width_mult=1.0)
for _wm in (0.5, 1.5, 2.0):
    _register(f"shufflenet_3d_{_w(_wm)}", shufflenet_3d, f"g3_{_wm}x", groups=3, width_mult=_wm)
_register("shufflenetv2_3d", shufflenetv2_3d, "1.0x", width_mult=1.0)
for _wm in (0.25, 1.5, 2.0):
    _register(f"shufflenetv2_3d_{_w(_wm)}", shufflenetv2_3d, f"{_wm}x", width_mult=_wm)
