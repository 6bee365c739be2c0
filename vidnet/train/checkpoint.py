"""The one place that writes and reads training checkpoints.

A checkpoint is a ``torch.save`` dict written atomically (temporary file, then rename), so a crash or Ctrl-C
during the write leaves the previous file intact. It holds everything a resume needs to continue exactly as an
uninterrupted run would: model, optimizer, gradient scaler and EMA states, the position (epoch, iteration
within it, optimizer step), the RNG states of Python, NumPy and torch, the resolved config, the label map and
the preprocessing (clip length, size, frame intervals, mean/std). The learning rate and the multigrid shape are
pure functions of the position (`vidnet.train.schedules`), and the batch order and augmentation are seeded by
(seed, epoch, index), so the position *is* the scheduler and sampler state.

Files in ``<run>/checkpoints/``: ``ep-0003.pth`` after epoch 3, ``ep-0003-it-000120.pth`` when stopped
inside epoch 4 after 120 iterations (Ctrl-C, ``--max-steps``), ``best.pth`` (best validation top-1).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidnet._io import atomic_path
from vidnet._log import get_logger
from vidnet.errors import VidnetError

__all__ = [
    "CheckpointError",
    "checkpoint_name",
    "save_checkpoint",
    "load_checkpoint",
    "find_checkpoints",
    "latest_checkpoint",
    "rng_state",
    "set_rng_state",
    "unwrap",
    "load_pretrained",
    "FORMAT",
]

log = get_logger(__name__)

FORMAT = "vidnet-train-1"
_NAME = re.compile(r"^ep-(\d{4,})(?:-it-(\d{6,}))?\.pth$")


class CheckpointError(VidnetError):
    """A checkpoint is missing, unreadable or does not fit the model being trained."""


def checkpoint_name(epoch: int, iteration: int = 0) -> str:
    """File name for a checkpoint taken after ``epoch`` whole epochs plus ``iteration`` iterations."""
    return f"ep-{epoch:04d}.pth" if iteration == 0 else f"ep-{epoch:04d}-it-{iteration:06d}.pth"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        else:
            return model


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU) and every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring for its keys) atomically to ``path``; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU.

    Raises:
        CheckpointError: missing or unreadable file, or not a vidnet training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # weights_only=False: the checkpoint holds RNG states and the config, written by vidnet itself.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a truncated or foreign file
        raise CheckpointError(f"{path}: unreadable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vidnet training checkpoint (use --pretrained-3d for weights only)")
    return ckpt


def find_checkpoints(folder: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """``(epoch, iteration, path)`` of the resumable checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2) or 0), p))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint furthest into training in ``folder``, or None."""
    found = find_checkpoints(folder)
    return found[-1][2] if found else None


def apply_architecture(model: nn.Module, obj: Any, path: str | os.PathLike) -> None:
    """Resize ``model`` to the channel counts of a structurally pruned model's checkpoint ``obj`` (its
    ``architecture`` entry, see `vidnet.network.compress.apply_channel_spec`); nothing when it has none.

    Raises:
        CheckpointError: the recorded channel counts do not fit the model (naming ``path``).
    """
    if not (isinstance(obj, dict) and isinstance(obj.get("architecture"), dict)):
        return
    from vidnet.errors import UsageError
    from vidnet.network.compress import apply_channel_spec

    try:
        apply_channel_spec(model, obj["architecture"])
    except UsageError as err:
        raise CheckpointError(f"{path}: pruned architecture does not fit the model: {err}") from None


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Copy the weights of ``path`` whose names and shapes match ``model`` (non-strict initialisation).

    Accepts a vidnet checkpoint, a dict with ``state_dict`` (the original SRTG format; ``module.`` prefixes
    are removed) or a bare state dict. A checkpoint of a structurally pruned model (``vidnet compress --out``,
    or a training run of one) carries its ``architecture``: ``model`` is first resized to those channel counts
    (`vidnet.network.compress.apply_channel_spec`), so every weight fits.

    Returns:
        (model keys not filled, checkpoint keys skipped for a missing name or another shape).

    Raises:
        CheckpointError: the file is unreadable or nothing in it fits the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # see load_checkpoint
        raise CheckpointError(f"{path}: unreadable weights ({str(err).splitlines()[0]})") from None
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state dict inside")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    apply_architecture(model, obj, path)
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fits:
        raise CheckpointError(f"{path}: none of its {len(state)} weights match the model's names and shapes")
    model.load_state_dict(fits, strict=False)
    missing = [k for k in own if k not in fits]
    skipped = [k for k in state if k not in fits]
    return missing, skipped
