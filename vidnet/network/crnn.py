"""From-scratch 3D CNN and CNN+LSTM (CRNN) baselines, after HHTseng/video-classification.

Donahue et al., "Long-term Recurrent Convolutional Networks for Visual Recognition and Description",
CVPR 2015 (arXiv 1411.4389), for the CNN-encoder + LSTM-decoder design.

Defaults are the original training scripts' settings (not its class defaults), so parameter counts equal the
reference: ``simple_cnn3d`` 320,117,237; ``crnn`` 81,434,213; ``crnn_resnet152`` 67,887,525 (101 classes).
Submodule names equal the original's (``conv1``/``bn1``/``fc1``..., ``encoder.conv1.0``..., ``decoder.LSTM``...,
``encoder.resnet.4.0.conv1``...), so its saved encoder/decoder files load into ``model.encoder`` /
``model.decoder``.

Differences from the original, on purpose:
* Inputs are vidnet clips ``[B, C, T, H, W]`` (the original took ``[B, T, C, H, W]`` for the CRNN).
* The flattening classifiers see an adaptive average pool sized from ``img_size``/``t_dim``: an identity at
  the configured size (same function and count as the original), and any other clip size now works; clips
  smaller than the convolutions' receptive field are edge-padded up to it instead of crashing.
* All frames go through the encoder as one batch (the original looped over time; identical in eval mode,
  BatchNorm statistics in training come from all frames of the batch rather than one time step).
* The ResNet-CRNN freezes only the ResNet trunk. The original ran its whole encoder, fc layers included,
  under ``no_grad``, so the encoder fc/BN layers it handed to the optimiser never received a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network._registry import register_model
from vidnet.network.resnet2d import RESNET2D_LAYERS, TransferReport, resnet2d, transfer_resnet2d_weights

__all__ = ["SimpleCNN3D", "CNNEncoder", "ResNetEncoder", "LSTMDecoder", "CRNN", "crnn", "simple_cnn3d"]

_PAPER_LRCN = "Donahue et al., Long-term Recurrent Convolutional Networks, CVPR 2015 (arXiv 1411.4389)"
_PAPER_3D = "Ji et al., 3D Convolutional Neural Networks for Human Action Recognition, TPAMI 2013"

# ITU-R BT.601 luma, what PIL's convert('L') uses; the original fed the 3D CNN grayscale frames.
_LUMA = (0.299, 0.587, 0.114)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _pad_to(x: torch.Tensor, minimum: tuple[int, ...]) -> torch.Tensor:
    """Edge-pad the trailing dims of ``x`` up to ``minimum`` (only when smaller)."""
    pads: list[int] = []
    for size, need in zip(reversed(x.shape[-len(minimum) :]), reversed(minimum), strict=True):
        pads += [0, max(0, need - size)]
    return F.pad(x, pads, mode="replicate") if any(pads) else x


def _match_channels(x: torch.Tensor, in_channels: int, what: str) -> torch.Tensor:
    if x.shape[1] == in_channels:
        return x
    if in_channels == 1 and x.shape[1] == 3:
        w = x.new_tensor(_LUMA).view(1, 3, *([1] * (x.dim() - 2)))
        return (x * w).sum(dim=1, keepdim=True)
    raise VidnetError(f"{what} expects {in_channels} input channels, got shape {tuple(x.shape)}")


class SimpleCNN3D(nn.Module):
    """Two strided 3D convolutions and three fully connected layers, trained from scratch.

    Args:
        num_classes: classifier outputs.
        t_dim: clip length the classifier is sized for (28 in the original script).
        img_size: frame ``(H, W)`` the classifier is sized for ((256, 342) in the original script).
        fc_hidden: widths of the two hidden fully connected layers.
        in_channels: 1 (grayscale, as the original; RGB input is converted with BT.601 luma) or 3.
        dropout: dropout after each conv block (Dropout3d) and before the last layer.
    """

    def __init__(
        self,
        *,
        num_classes: int = 101,
        t_dim: int = 28,
        img_size: tuple[int, int] = (256, 342),
        fc_hidden: tuple[int, int] = (256, 256),
        in_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv3d(in_channels, 32, 5, stride=2)
        self.bn1 = nn.BatchNorm3d(32)
        self.conv2 = nn.Conv3d(32, 48, 3, stride=2)
        self.bn2 = nn.BatchNorm3d(48)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout3d(dropout)
        self.dropout = dropout
        size = tuple(_conv_out(_conv_out(s, 5, 2), 3, 2) for s in (t_dim, *img_size))
        if min(size) < 1:
            raise VidnetError(f"SimpleCNN3D: t_dim/img_size {(t_dim, *img_size)} too small (each must be >= 9)")
        self.pool = nn.AdaptiveAvgPool3d(size)  # identity at the configured clip size
        self.fc1 = nn.Linear(48 * size[0] * size[1] * size[2], fc_hidden[0])
        self.fc2 = nn.Linear(fc_hidden[0], fc_hidden[1])
        self.fc3 = nn.Linear(fc_hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_to(_match_channels(x, self.in_channels, "SimpleCNN3D"), (9, 9, 9))
        x = self.drop(self.relu(self.bn1(self.conv1(x))))
        x = self.drop(self.relu(self.bn2(self.conv2(x))))
        x = torch.flatten(self.pool(x), 1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.fc3(F.dropout(x, self.dropout, self.training))


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    # BN momentum 0.01 as in the original encoder.
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=2), nn.BatchNorm2d(cout, momentum=0.01), nn.ReLU(inplace=True))


class CNNEncoder(nn.Module):
    """Per-frame 2D CNN (four strided convolutions, three fully connected layers) trained from scratch.

    Args:
        img_size: frame ``(H, W)`` the first fully connected layer is sized for.
        fc_hidden: widths of the two hidden layers.
        embed_dim: output embedding size.
        dropout: dropout before the embedding layer.
    """

    def __init__(
        self,
        *,
        img_size: tuple[int, int] = (256, 342),
        fc_hidden: tuple[int, int] = (1024, 768),
        embed_dim: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(3, 32, 5)
        self.conv2 = _conv_bn_relu(32, 64, 3)
        self.conv3 = _conv_bn_relu(64, 128, 3)
        self.conv4 = _conv_bn_relu(128, 256, 3)
        size = []
        for s in img_size:
            s = _conv_out(s, 5, 2)
            for _ in range(3):
                s = _conv_out(s, 3, 2)
            size.append(s)
        if min(size) < 1:
            raise VidnetError(f"CNNEncoder: img_size {img_size} too small (each side must be >= 33)")
        self.pool = nn.AdaptiveAvgPool2d(tuple(size))  # identity at the configured frame size
        self.fc1 = nn.Linear(256 * size[0] * size[1], fc_hidden[0])
        self.fc2 = nn.Linear(fc_hidden[0], fc_hidden[1])
        self.fc3 = nn.Linear(fc_hidden[1], embed_dim)
        self.dropout = dropout
        self.embed_dim = embed_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` frames -> ``[N, embed_dim]``."""
        x = _pad_to(frames, (33, 33))
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        x = torch.flatten(self.pool(x), 1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.fc3(F.dropout(x, self.dropout, self.training))


class ResNetEncoder(nn.Module):
    """Per-frame 2D ResNet trunk (ImageNet-initialisable) and a three-layer embedding head.

    The trunk is ``resnet`` = torchvision ResNet's children without ``fc`` (keys ``resnet.0.*`` = conv1,
    ``resnet.1.*`` = bn1, ``resnet.4.*`` .. ``resnet.7.*`` = layer1..4), as the original stored it.

    Args:
        depth: ResNet depth, 18/34/50/101/152.
        fc_hidden: widths of the two hidden layers (each followed by BatchNorm1d and ReLU).
        embed_dim: output embedding size.
        dropout: dropout before the embedding layer.
        freeze_trunk: keep the ResNet's parameters fixed (the original's choice for ImageNet features).
    """

    def __init__(
        self,
        depth: int = 152,
        *,
        fc_hidden: tuple[int, int] = (1024, 768),
        embed_dim: int = 512,
        dropout: float = 0.0,
        freeze_trunk: bool = True,
    ) -> None:
        super().__init__()
        net = resnet2d(depth)
        self.resnet = nn.Sequential(*list(net.children())[:-1])
        self.fc1 = nn.Linear(net.num_features, fc_hidden[0])
        self.bn1 = nn.BatchNorm1d(fc_hidden[0], momentum=0.01)
        self.fc2 = nn.Linear(fc_hidden[0], fc_hidden[1])
        self.bn2 = nn.BatchNorm1d(fc_hidden[1], momentum=0.01)
        self.fc3 = nn.Linear(fc_hidden[1], embed_dim)
        self.dropout = dropout
        self.embed_dim = embed_dim
        self.resnet.requires_grad_(not freeze_trunk)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` frames -> ``[N, embed_dim]``."""
        x = torch.flatten(self.resnet(frames), 1)
        x = F.relu(self.bn1(self.fc1(x)))
        x = F.relu(self.bn2(self.fc2(x)))
        return self.fc3(F.dropout(x, self.dropout, self.training))

    def load_resnet2d(self, source: str | Path | Mapping[str, torch.Tensor]) -> TransferReport:
        """Fill the trunk from a torchvision-format ResNet file or state dict of the same depth.

        Raises:
            VidnetError: the source does not fill every trunk entry.
        """
        return transfer_resnet2d_weights(
            self, source, key_map=_torchvision_to_sequential, require=lambda k: k.startswith("resnet.")
        )


_TOP_INDEX = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}


def _torchvision_to_sequential(key: str) -> str | None:
    top, rest = key.split(".", 1)
    return f"resnet.{_TOP_INDEX[top]}.{rest}" if top in _TOP_INDEX else None


class LSTMDecoder(nn.Module):
    """Stacked LSTM over frame embeddings; the last step's output is classified by two layers.

    Args:
        num_classes: classifier outputs.
        embed_dim: input embedding size.
        hidden: LSTM hidden size.
        num_layers: LSTM layers.
        fc_dim: width of the hidden fully connected layer.
        dropout: dropout before the last layer.
    """

    def __init__(
        self,
        *,
        num_classes: int = 101,
        embed_dim: int = 512,
        hidden: int = 512,
        num_layers: int = 3,
        fc_dim: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.LSTM = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True)  # noqa: N815 - original key
        self.fc1 = nn.Linear(hidden, fc_dim)
        self.fc2 = nn.Linear(fc_dim, num_classes)
        self.dropout = dropout

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, T, embed_dim]`` -> ``[B, num_classes]``."""
        out, _ = self.LSTM(seq)
        x = F.relu(self.fc1(out[:, -1]))
        return self.fc2(F.dropout(x, self.dropout, self.training))


class CRNN(nn.Module):
    """A per-frame 2D encoder followed by an LSTM decoder, on clips ``[B, 3, T, H, W]`` of any T >= 1.

    Args:
        encoder: maps ``[N, 3, H, W]`` to ``[N, embed_dim]`` (:class:`CNNEncoder` or :class:`ResNetEncoder`).
        decoder: maps ``[B, T, embed_dim]`` to logits (:class:`LSTMDecoder`).
        frame_chunk: frames per encoder pass, bounding memory on long videos (0: all at once).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, frame_chunk: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.frame_chunk = frame_chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise VidnetError(f"CRNN expects a clip [B, C, T, H, W], got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        chunk = self.frame_chunk if self.frame_chunk > 0 else b * t
        emb = torch.cat([self.encoder(f) for f in frames.split(chunk)])
        return self.decoder(emb.view(b, t, -1))


def crnn(
    *,
    num_classes: int = 101,
    backbone: int | None = None,
    img_size: tuple[int, int] = (256, 342),
    fc_hidden: tuple[int, int] = (1024, 768),
    embed_dim: int = 512,
    lstm_hidden: int = 512,
    lstm_layers: int = 3,
    fc_dim: int = 256,
    dropout: float = 0.0,
    freeze_trunk: bool = True,
    pretrained_2d: str | Path | None = None,
    frame_chunk: int = 0,
) -> CRNN:
    """Build a CRNN with a from-scratch encoder (``backbone=None``) or a 2D ResNet encoder.

    Args:
        num_classes: classifier outputs.
        backbone: ResNet depth (18/34/50/101/152) for the encoder, or None for the from-scratch CNN.
        img_size: frame size the from-scratch encoder's classifier is sized for (ignored with a ResNet).
        fc_hidden: encoder hidden widths.
        embed_dim: frame embedding size.
        lstm_hidden: LSTM hidden size.
        lstm_layers: LSTM layers.
        fc_dim: decoder hidden width.
        dropout: dropout in the encoder and decoder heads.
        freeze_trunk: keep the ResNet trunk fixed (ResNet encoder only).
        pretrained_2d: torchvision ResNet weight file for the trunk (ResNet encoder only).
        frame_chunk: frames per encoder pass (0: all at once).
    """
    if backbone is None:
        if pretrained_2d is not None:
            raise VidnetError("pretrained_2d needs a ResNet backbone; the from-scratch CRNN encoder has none")
        encoder: nn.Module = CNNEncoder(img_size=img_size, fc_hidden=fc_hidden, embed_dim=embed_dim, dropout=dropout)
    else:
        if backbone not in RESNET2D_LAYERS:
            raise VidnetError(f"CRNN backbone {backbone} is not one of {sorted(RESNET2D_LAYERS)}")
        encoder = ResNetEncoder(
            backbone, fc_hidden=fc_hidden, embed_dim=embed_dim, dropout=dropout, freeze_trunk=freeze_trunk
        )
        if pretrained_2d is not None:
            encoder.load_resnet2d(pretrained_2d)
    decoder = LSTMDecoder(
        num_classes=num_classes,
        embed_dim=embed_dim,
        hidden=lstm_hidden,
        num_layers=lstm_layers,
        fc_dim=fc_dim,
        dropout=dropout,
    )
    return CRNN(encoder, decoder, frame_chunk=frame_chunk)


@register_model("crnn", family="crnn", paper=_PAPER_LRCN, depth="4")
def crnn_scratch(*, num_classes: int = 101, **options) -> CRNN:
    """CRNN with the from-scratch four-convolution encoder (81,434,213 parameters at 101 classes)."""
    return crnn(num_classes=num_classes, **options)


def _crnn_resnet_builder(depth: int):
    def build(*, num_classes: int = 101, **options) -> CRNN:
        return crnn(num_classes=num_classes, backbone=depth, **options)

    build.__name__ = f"crnn_resnet{depth}"
    build.__doc__ = f"CRNN with a 2D ResNet-{depth} encoder (trunk frozen by default)."
    return build


for _depth in RESNET2D_LAYERS:
    register_model(f"crnn_resnet{_depth}", family="crnn_resnet", paper=_PAPER_LRCN, depth=str(_depth))(
        _crnn_resnet_builder(_depth)
    )


@register_model("simple_cnn3d", family="cnn3d", paper=_PAPER_3D, depth="2")
def simple_cnn3d(*, num_classes: int = 101, **options) -> SimpleCNN3D:
    """Two-convolution 3D CNN from scratch (320,117,237 parameters at 101 classes, 28 x 256 x 342 clips)."""
    return SimpleCNN3D(num_classes=num_classes, **options)
