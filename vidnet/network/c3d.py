"""C3D with batch norm, as in okankop/Efficient-3DCNNs.

Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015, arXiv 1412.0767.

Eight 3x3x3 convolutions (64, 128, 256x2, 512x2, 512x2), each followed by batch norm (the original C3D has
none) and ReLU, in five groups ending in max-pooling, then fc1/fc2 of 4096 with ReLU and dropout, and a linear
classifier. (One revision of the Efficient-3DCNNs file also puts BatchNorm1d in fc1/fc2; the measured
snapshot, whose counts this matches, does not.) Module names (``group1.0``, ``fc1.0``, ``fc.0``, ...) are those
of the Efficient-3DCNNs code, so its checkpoints load directly.

Any clip length and size: the original flattens the last map into ``fc1``, whose input size it fixes from
``sample_duration``/``sample_size`` (512 x floor(T/16) x ceil(S/32)^2 = 8192 at 16x112x112), and its 2x2x2
pools need at least 16 frames. Here an adaptive average pool brings the map to ``pool_size`` (1, 4, 4) before
``fc1`` (an identity at 16x112x112, so the two agree there; pass ``pool_size=(2, 4, 4)`` for a model trained
on 32 frames), and a pool whose input is shorter than its kernel repeats the last frame or row first.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.network._registry import register_model

__all__ = ["C3D", "c3d"]

PAPER = "Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks, arXiv 1412.0767"


class _ShortInputMaxPool3d(nn.MaxPool3d):
    """MaxPool3d that first replicates the last slice of a dimension shorter than the (padded) kernel.

    Padding a size-1 dimension to 2 by repetition leaves the max unchanged, so inputs the plain pool accepts
    give identical results.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, p = self.kernel_size, self.padding
        assert isinstance(k, tuple) and isinstance(p, tuple)
        need = [max(0, k[i] - 2 * p[i] - x.shape[2 + i]) for i in range(3)]
        if any(need):
            x = F.pad(x, (0, need[2], 0, need[1], 0, need[0]), mode="replicate")
        return super().forward(x)


def _pool(kernel: tuple[int, int, int], stride: tuple[int, int, int],
          padding: tuple[int, int, int] = (0, 0, 0)) -> nn.MaxPool3d:
    return _ShortInputMaxPool3d(kernel_size=kernel, stride=stride, padding=padding)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm3d(cout), nn.ReLU()]


class C3D(nn.Module):
    """C3D with batch norm (Efficient-3DCNNs' variant).

    Args:
        num_classes: classifier outputs.
        in_channels: input channels.
        dropout: dropout after fc1 and fc2.
        pool_size: size of the map fed to ``fc1`` (T, H, W); ``fc1`` has ``512 * T * H * W`` inputs.
    """

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5,
                 pool_size: tuple[int, int, int] = (1, 4, 4)) -> None:
        super().__init__()
        two = (2, 2, 2)
        self.group1 = nn.Sequential(*_conv_bn_relu(in_channels, 64), _pool(two, (1, 2, 2)))
        self.group2 = nn.Sequential(*_conv_bn_relu(64, 128), _pool(two, two))
        self.group3 = nn.Sequential(*_conv_bn_relu(128, 256), *_conv_bn_relu(256, 256), _pool(two, two))
        self.group4 = nn.Sequential(*_conv_bn_relu(256, 512), *_conv_bn_relu(512, 512), _pool(two, two))
        self.group5 = nn.Sequential(*_conv_bn_relu(512, 512), *_conv_bn_relu(512, 512),
                                    _pool((1, 2, 2), two, (0, 1, 1)))
        self.pool = nn.AdaptiveAvgPool3d(tuple(pool_size))
        fc_in = 512 * pool_size[0] * pool_size[1] * pool_size[2]
        self.fc1 = nn.Sequential(nn.Linear(fc_in, 4096), nn.ReLU(), nn.Dropout(dropout))
        self.fc2 = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout))
        self.fc = nn.Sequential(nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The group5 feature map, N x 512 x T' x H' x W'."""
        return self.group5(self.group4(self.group3(self.group2(self.group1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.fc(self.fc2(self.fc1(x)))


@register_model("c3d", family="c3d", paper=PAPER, depth="8")
def c3d(*, num_classes: int = 400, **options) -> C3D:
    """C3D with batch norm; options as :class:`C3D`."""
    return C3D(num_classes=num_classes, **options)
