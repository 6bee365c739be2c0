"""Tiny 3D and 2D networks for the quickstart and CPU smoke runs (not from a paper).

``tiny_3d`` is four 3D convolutions (3x3x3 after a 3x5x5 stem) with batch norm, global pooling and a linear
classifier: about 0.1 M parameters, enough to tell the sample dataset's motions apart on a laptop CPU.
``tiny_2d`` is the same network with every temporal kernel set to 1, meant for single-frame clips
(``--clip-length 1``): it sees appearance only, which is why it cannot separate classes that differ only in
motion. The pair shows on the quickstart what temporal modelling buys.
"""

from __future__ import annotations

from torch import Tensor, nn

from vidnet.network._registry import register_model

__all__ = ["TinyNet", "tiny_3d", "tiny_2d"]


class TinyNet(nn.Module):
    """Stem + three strided conv-BN-ReLU blocks, global average pooling, dropout, linear classifier.

    Args:
        num_classes: Outputs of the classifier.
        widths: Channels of the four convolutions.
        temporal: 3D kernels (True) or spatial-only (1, k, k) kernels (False).
        dropout: Dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 400,
        *,
        widths: tuple[int, int, int, int] = (16, 32, 64, 96),
        temporal: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        kt = 3 if temporal else 1
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(widths):
            ks = (kt, 5, 5) if i == 0 else (kt, 3, 3)
            st = (1, 2, 2) if i == 0 else ((2 if temporal and i >= 2 else 1), 2, 2)
            layers += [nn.Conv3d(c_in, c, ks, stride=st, padding=(kt // 2, ks[1] // 2, ks[2] // 2), bias=False),
                       nn.BatchNorm3d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, T, H, W]`` clips -> ``[B, num_classes]`` logits (any T >= 1, H, W >= 8)."""
        # Max over space: the action is a small object in a large frame, which a spatial mean would dilute.
        x = self.features(x).amax(dim=(3, 4)).mean(dim=2)
        return self.fc(self.dropout(x))


@register_model("tiny_3d", family="tiny", depth="4")
def tiny_3d(*, num_classes: int = 400, **options) -> TinyNet:
    """Four 3D convolutions, ~0.1 M parameters: quickstart and smoke tests."""
    return TinyNet(num_classes, temporal=True, **options)


@register_model("tiny_2d", family="tiny", depth="4")
def tiny_2d(*, num_classes: int = 400, **options) -> TinyNet:
    """`tiny_3d` with spatial-only kernels, for single-frame clips (``--clip-length 1``)."""
    return TinyNet(num_classes, temporal=False, **options)
