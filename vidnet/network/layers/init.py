"""Weight initialisation shared by the 3D trunks (video ResNets, MTNet, the efficient 3D CNNs)."""

from __future__ import annotations

from torch import nn

__all__ = ["init_video_weights_"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


def init_video_weights_(model: nn.Module) -> None:
    """Kaiming fan-out convolutions with zero biases, unit/zero norms, linear layers N(0, 0.01) with zero bias.

    Recurrent layers keep PyTorch's defaults. Models that follow another original's scheme (Hara's ResNets,
    C3D, torchvision's 2D ResNets) initialise themselves.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
