"""Inflating 2D (ImageNet) weights into 3D kernels.

Carreira and Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017 (arXiv 1705.07750), section 2.4.

A k x k kernel becomes t x k x k by repeating it t times along time and dividing by t, so a clip of
identical frames gives every 3D convolution the response of its 2D original (the "boring video" argument).
MiCT-Net's 3D-ResNet bootstraps its filters this way; 1x1 kernels become 1x1x1 unscaled.

Three tools: :func:`inflate_weight` for one tensor, :func:`inflate_state_dict` / :func:`load_inflated` to
fill a 3D model whose key names equal a 2D file's (kensho and vidnet 3D ResNets share torchvision's names),
and :func:`inflate_module` to turn a 2D network into its 3D twin.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network.resnet2d import TransferReport
from vidnet.network.weights import read_state_dict

__all__ = ["inflate_weight", "inflate_state_dict", "load_inflated", "inflate_module", "TemporalPadConv3d"]


def inflate_weight(
    weight: torch.Tensor, time_size: int, *, mode: Literal["average", "center"] = "average"
) -> torch.Tensor:
    """Turn a 2D kernel ``[out, in, kh, kw]`` into a 3D kernel ``[out, in, time_size, kh, kw]``.

    Args:
        weight: the 2D convolution weight.
        time_size: temporal kernel size.
        mode: ``"average"`` repeats along time and divides by ``time_size`` (I3D); ``"center"`` puts the 2D
            kernel on the middle slice and zeros elsewhere. Both preserve the response to a static clip.

    Raises:
        VidnetError: the weight is not 4-D or ``time_size`` < 1.
    """
    if weight.dim() != 4:
        raise VidnetError(f"inflate_weight: expected a 4-D conv weight, got shape {tuple(weight.shape)}")
    if time_size < 1:
        raise VidnetError(f"inflate_weight: time_size must be >= 1, got {time_size}")
    if mode == "average":
        return weight.unsqueeze(2).repeat(1, 1, time_size, 1, 1) / time_size
    if mode == "center":
        out = weight.new_zeros(weight.shape[:2] + (time_size,) + weight.shape[2:])
        out[:, :, time_size // 2] = weight
        return out
    raise VidnetError(f"inflate_weight: mode {mode!r} is not 'average' or 'center'")


def inflate_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    target: nn.Module | Mapping[str, torch.Tensor],
    *,
    key_map: Callable[[str], str | None] | None = None,
    mode: Literal["average", "center"] = "average",
) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """Map a 2D state dict onto a 3D model's names and shapes.

    Same-shape entries (BN, biases, a matching classifier) are copied; a 4-D kernel whose target is 5-D
    with the same out/in/spatial sizes is inflated to the target's temporal size; anything else is skipped
    with the reason.

    Args:
        state_dict: the 2D weights (e.g. a torchvision ResNet file's contents).
        target: the 3D model, or its state dict (only names and shapes are read).
        key_map: renames a 2D key to the target's key (None drops it); identity when omitted.
        mode: inflation mode, see :func:`inflate_weight`.

    Returns:
        The new state dict (target names) and a report of loaded, skipped and missing keys.
    """
    own = target.state_dict() if isinstance(target, nn.Module) else dict(target)
    report = TransferReport()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        dest = key_map(key) if key_map is not None else key
        if dest is None or dest not in own:
            report.skipped[key] = "no such key in the target"
            continue
        want = own[dest].shape
        if value.shape == want:
            out[dest] = value
        elif value.dim() == 4 and len(want) == 5 and (want[:2], want[3:]) == (value.shape[:2], value.shape[2:]):
            out[dest] = inflate_weight(value, want[2], mode=mode)
        else:
            report.skipped[key] = f"shape {tuple(value.shape)} does not inflate to {tuple(want)}"
    report.loaded = sorted(out)
    report.missing = [k for k in own if k not in out]
    return out, report


def load_inflated(
    model: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    key_map: Callable[[str], str | None] | None = None,
    mode: Literal["average", "center"] = "average",
    strict: bool = False,
) -> TransferReport:
    """Inflate a 2D weight file (or state dict) into ``model`` in place.

    Args:
        model: the 3D model to fill.
        source: a weight file path (read with ``weights_only=True``) or a state dict.
        key_map: renames 2D keys to the model's keys.
        mode: inflation mode, see :func:`inflate_weight`.
        strict: raise (loading nothing) when any model entry other than the classifier (``fc.*``) and BN
            counters would stay unfilled.

    Raises:
        VidnetError: ``strict`` and the file does not cover the model.
    """
    new, report = inflate_state_dict(read_state_dict(source), model, key_map=key_map, mode=mode)
    if strict:
        gaps = [k for k in report.missing if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
        if gaps:
            where = str(source) if isinstance(source, str | Path) else "state dict"
            raise VidnetError(f"{where}: {len(gaps)} entries of the 3D model found no 2D weight (first: {gaps[0]})")
    model.load_state_dict(new, strict=False)
    return report


class TemporalPadConv3d(nn.Conv3d):
    """Conv3d whose temporal padding repeats the edge frames instead of inserting zeros.

    With replicated edges a static clip stays static through every layer, so an inflated network computes
    its 2D original exactly on any clip length; zero padding would dim the first and last frames.
    The state dict is a plain Conv3d's.
    """

    def __init__(self, *args, time_pad: tuple[int, int] = (0, 0), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_pad = tuple(time_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.time_pad):
            x = F.pad(x, (0, 0, 0, 0, *self.time_pad), mode="replicate")
        return super().forward(x)


def _time_kernel_of(conv: nn.Conv2d, time_kernel: int | Callable[[nn.Conv2d], int] | None) -> int:
    if time_kernel is None:
        return conv.kernel_size[0]  # 7x7 -> 7x7x7, 3x3 -> 3x3x3, 1x1 -> 1x1x1: MiCT/kensho 3D-ResNet layout
    return time_kernel(conv) if callable(time_kernel) else (time_kernel if conv.kernel_size != (1, 1) else 1)


def inflate_module(
    module: nn.Module,
    *,
    time_kernel: int | Callable[[nn.Conv2d], int] | None = None,
    time_padding: Literal["zeros", "replicate"] = "replicate",
    mode: Literal["average", "center"] = "average",
) -> nn.Module:
    """Return a 3D twin of a 2D network with inflated weights; the original is left untouched.

    Conv2d becomes Conv3d (temporal stride 1, "same" temporal padding), BatchNorm2d becomes BatchNorm3d
    (statistics copied), max/avg pooling pools per frame, adaptive average pooling to ``(1, 1)`` also
    averages over time. Module names stay, so the twin's keys equal the 2D keys with 5-D kernels. The
    twin's ``forward`` is the 2D class's, so it must only chain modules and flatten (true of
    :class:`~vidnet.network.resnet2d.ResNet2d`).

    Args:
        module: the 2D network.
        time_kernel: temporal size per conv: an int for every non-1x1 conv, a function of the conv, or None
            for "same as the spatial size".
        time_padding: ``"replicate"`` (static clips map exactly to the 2D output) or ``"zeros"``.
        mode: inflation mode, see :func:`inflate_weight`.
    """
    twin = copy.deepcopy(module)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            new = _inflate_leaf(child, time_kernel, time_padding, mode)
            if new is not None:
                setattr(parent, name, new)
    return twin


def _inflate_leaf(m: nn.Module, time_kernel, time_padding: str, mode) -> nn.Module | None:
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise VidnetError(f"inflate_module: cannot inflate {m} (only numeric zero padding)")
        kt = _time_kernel_of(m, time_kernel)
        pt = (kt - 1) // 2  # an even kernel pads one frame more after than before, keeping T
        common = dict(stride=(1, *m.stride), dilation=(1, *m.dilation), groups=m.groups, bias=m.bias is not None)
        if time_padding == "replicate":
            conv = TemporalPadConv3d(
                m.in_channels,
                m.out_channels,
                (kt, *m.kernel_size),
                padding=(0, *m.padding),
                time_pad=(pt, kt - 1 - pt),
                **common,
            )
        else:
            conv = nn.Conv3d(m.in_channels, m.out_channels, (kt, *m.kernel_size), padding=(pt, *m.padding), **common)
        conv = conv.to(device=m.weight.device, dtype=m.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(inflate_weight(m.weight, kt, mode=mode))
            if m.bias is not None:
                conv.bias.copy_(m.bias)
        return conv
    if isinstance(m, nn.BatchNorm2d):
        bn = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn.load_state_dict(m.state_dict())
        return bn.to(device=m.weight.device if m.affine else None)
    if isinstance(m, nn.MaxPool2d):
        k, s, p = (_pair(v) for v in (m.kernel_size, m.stride, m.padding))
        return nn.MaxPool3d((1, *k), (1, *s), (0, *p), ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        k, s, p = (_pair(v) for v in (m.kernel_size, m.stride, m.padding))
        return nn.AvgPool3d((1, *k), (1, *s), (0, *p), ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = _pair(m.output_size)
        return nn.AdaptiveAvgPool3d((1 if size == (1, 1) else None, *size))
    return None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)
