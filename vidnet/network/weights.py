"""Load checkpoints into vidnet models: by matching names and shapes, safely, with a report.

:func:`load_weights` accepts a path or an in-memory state dict, unwraps ``{'state_dict': ...}`` checkpoints
(the original SRTG/MTNet training code and Hara's 3D ResNets save that format), strips ``module.`` prefixes
left by DataParallel/DistributedDataParallel (and ``_orig_mod.`` from ``torch.compile``), and loads every
entry whose name and shape match the model. Files are read with ``torch.load(..., weights_only=True)``: a
checkpoint is untrusted input and its pickle must not run code.

Original key layouts (the remapping protocol). A model class whose module names differ from the code its
checkpoints were saved with defines::

    def remap_original_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        '''Return ``sd`` with the original keys renamed (and tensors reshaped if needed) to this model's.'''

:func:`load_weights` calls it when some checkpoint keys are not the model's own names, then matches the
result by name and shape as usual. The method must pass keys it does not know through unchanged, so that
a checkpoint already in vidnet's layout is unaffected. :meth:`VideoResNet.remap_original_state_dict
<vidnet.network.resnet3d.VideoResNet.remap_original_state_dict>` is an example.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from vidnet._log import get_logger
from vidnet.errors import VidnetError

__all__ = ["LoadReport", "load_weights", "read_state_dict"]

_log = get_logger(__name__)
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        loaded: model keys that received a tensor.
        skipped: checkpoint key -> reason it was not loaded (not in the model, or a shape mismatch).
        missing: model keys the checkpoint did not provide (they keep their current values).
        remapped: True when the model's ``remap_original_state_dict`` was applied.
    """

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    remapped: bool = False

    @property
    def complete(self) -> bool:
        """Every model entry was loaded and nothing in the checkpoint was left over."""
        return not self.skipped and not self.missing

    def summary(self) -> str:
        """One line: counts, and the first few skipped/missing keys."""
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.remapped:
            parts.append("original key layout remapped")
        if self.skipped:
            first = "; ".join(f"{k}: {why}" for k, why in list(self.skipped.items())[:3])
            parts.append(f"skipped {len(self.skipped)} ({first}{'; ...' if len(self.skipped) > 3 else ''})")
        if self.missing:
            more = ", ..." if len(self.missing) > 3 else ""
            parts.append(f"missing {len(self.missing)} ({', '.join(self.missing[:3])}{more})")
        return ", ".join(parts)


def read_state_dict(source: str | Path | Mapping) -> dict[str, torch.Tensor]:
    """Read a checkpoint into a flat ``{name: tensor}`` dict without executing pickled code.

    Args:
        source: a ``.pth``/``.pt`` path, or a (possibly wrapped) state dict already in memory.

    Raises:
        VidnetError: the file is missing, is not a torch checkpoint, holds non-tensor objects a safe
            unpickler refuses, or contains no tensors.
    """
    where = "state dict"
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise VidnetError(f"{path}: checkpoint file not found")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise VidnetError(f"{path}: refusing to load a checkpoint with arbitrary Python objects "
                              f"(weights_only=True): {str(err).splitlines()[0]}") from err
        except (RuntimeError, EOFError, OSError) as err:
            raise VidnetError(f"{path}: not a readable torch checkpoint ({err})") from err
    else:
        obj = source
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise VidnetError(f"{where}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        while key.startswith(_PREFIXES):
            key = next(key.removeprefix(p) for p in _PREFIXES if key.startswith(p))
        out[key] = value
    if not out:
        raise VidnetError(f"{where}: no tensors found in the checkpoint")
    return out


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping,
    strict: bool = False,
) -> LoadReport:
    """Load every checkpoint tensor whose name and shape match the model, and report the rest.

    Args:
        model: the model to fill in place.
        path_or_state_dict: checkpoint path, or a state dict (plain, ``{'state_dict': ...}``-wrapped, with or
            without ``module.`` prefixes, in vidnet's or the original code's key layout).
        strict: raise unless every model entry was loaded and no checkpoint entry was skipped.

    Returns:
        A :class:`LoadReport` (also logged at info level, and at warning level for skipped entries).

    Raises:
        VidnetError: unreadable checkpoint, or ``strict`` and the checkpoint does not match exactly.
    """
    state = read_state_dict(path_or_state_dict)
    own = model.state_dict()
    report = LoadReport()
    remap = getattr(model, "remap_original_state_dict", None)
    if callable(remap) and any(k not in own for k in state):
        state = remap(dict(state))
        report.remapped = True
    matched = {}
    for key, value in state.items():
        if key not in own:
            report.skipped[key] = "not in the model"
        elif tuple(value.shape) != tuple(own[key].shape):
            report.skipped[key] = f"shape {tuple(value.shape)} != model {tuple(own[key].shape)}"
        else:
            matched[key] = value
    report.loaded = list(matched)
    report.missing = [k for k in own if k not in matched]
    if strict and not report.complete:
        raise VidnetError(f"checkpoint does not match {type(model).__name__} exactly: {report.summary()}")
    model.load_state_dict(matched, strict=False)
    (_log.warning if report.skipped else _log.info)("load_weights: %s", report.summary())
    return report
