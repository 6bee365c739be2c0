"""The one door from a weight file to a model: every command that reads weights comes through here.

``vidnet test``, ``predict``, ``compress``, ``export``, ``train --pretrained-3d`` and ``--teacher`` call
:func:`load_model` (build a model from a file, all weights required) or :func:`load_weights` (fill a model
that exists, reporting what loaded, what was skipped and what was left as initialised). Files are read by
`vidnet.checkpoint.read_file`, with ``torch.load(..., weights_only=True)``: a checkpoint is untrusted input
and its pickle must not run code.

What is recognised:

* files vidnet writes (`vidnet.checkpoint`): the weights under ``model``, with the network, labels,
  preprocessing and, for a structurally pruned model, its channel counts (``architecture``: the model is
  resized to them before the weights are loaded);
* a bare state dict, or one wrapped as ``{'state_dict': ...}`` (the original SRTG/MTNet code, Kensho Hara's
  3D ResNets, Efficient-3DCNNs, MMAction2), ``{'model_state': ...}`` (PySlowFast), ``{'model': ...}`` or
  ``{'model_state_dict': ...}``; ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``)
  prefixes are removed;
* the original code's key layouts: a model class whose module names differ from the code its checkpoints
  were saved with defines::

      def remap_original_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
          '''Return ``sd`` with the original keys renamed (and tensors reshaped if needed) to this model's.'''

  :func:`load_weights` calls it when some keys are not the model's own names, then matches the result by
  name and shape as usual. The method passes keys it does not know through unchanged, so a checkpoint
  already in vidnet's layout is unaffected. :meth:`VideoResNet.remap_original_state_dict
  <vidnet.network.resnet3d.VideoResNet.remap_original_state_dict>` is an example.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from vidnet._log import get_logger
from vidnet.checkpoint import CheckpointError, check_labels, check_meta, is_vidnet, read_file
from vidnet.errors import UsageError

__all__ = ["KeyRule", "LoadReport", "LoadedModel", "WeightFile", "apply_architecture", "load_model", "load_weights",
           "read_state_dict", "read_weight_file", "rename_key"]

_log = get_logger(__name__)
_WRAPPER_KEYS = ("state_dict", "model_state", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")

KeyRule = tuple[str, str | Callable[[re.Match[str]], str]]
"""``(pattern, replacement)`` for ``re.sub``: one step of a ``remap_original_state_dict`` key layout."""


def rename_key(key: str, rules: Sequence[KeyRule]) -> str:
    """``key`` after every rule in order (each rule sees the previous one's result); unmatched keys pass unchanged."""
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


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
        parts.append(f"left as initialised {len(self.missing)}"
                     + (f" ({', '.join(self.missing[:3])}{', ...' if len(self.missing) > 3 else ''})"
                        if self.missing else ""))
        return ", ".join(parts)


@dataclass
class WeightFile:
    """A weight file as read: its tensors and what it says about itself.

    Attributes:
        state: flat ``{name: tensor}``, wrappers and prefixes removed.
        meta: the file's other entries (vidnet files: ``network``, ``labels``, ``preprocessing``,
            ``config``, ``architecture``, ``kind`` ...; other files: whatever plain values sit beside the
            weights, e.g. ``arch``, ``epoch``).
        vidnet: whether vidnet wrote it.
        where: the path (or ``"state dict"``), for messages.
    """

    state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    vidnet: bool
    where: str

    @property
    def network(self) -> str | None:
        """The registered network the file names (``network``, or ``arch`` at the top or in ``config``)."""
        for scope in (self.meta, self.meta.get("config") if isinstance(self.meta.get("config"), dict) else {}):
            for key in ("network", "arch"):
                if isinstance(scope.get(key), str):
                    return scope[key]
        return None

    @property
    def labels(self) -> dict[str, int]:
        """The label map the file carries (vidnet's files do), checked; empty when it has none."""
        labels = self.meta.get("labels")
        return check_labels(labels, self.where) if labels is not None else {}


def read_weight_file(source: str | os.PathLike | Mapping | WeightFile) -> WeightFile:
    """Read a weight file (safely) or take an in-memory (possibly wrapped) state dict.

    Raises:
        CheckpointError: missing, unreadable or refused file; no tensors in it.
    """
    if isinstance(source, WeightFile):
        return source
    where = "state dict"
    if isinstance(source, str | os.PathLike):
        where = str(source)
        obj = read_file(source)
    else:
        obj = source
    vidnet = is_vidnet(obj)
    if vidnet:
        check_meta(obj, where)
    top = obj
    for _ in range(4):  # {'model': {'state_dict': ...}} at most; a dict that contains itself stops here too
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None) \
            if isinstance(obj, Mapping) else None
        if inner is None or inner is obj:
            break
        obj = inner
    if not isinstance(obj, Mapping) or any(isinstance(v, Mapping) and k in _WRAPPER_KEYS for k, v in obj.items()):
        raise CheckpointError(f"{where}: expected a state dict (name -> tensor), found "
                              f"{type(obj).__name__ if not isinstance(obj, Mapping) else 'wrappers nested too deep'}")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        while key.startswith(_PREFIXES):
            key = next(key.removeprefix(p) for p in _PREFIXES if key.startswith(p))
        state[key] = value
    if not state:
        raise CheckpointError(f"{where}: no tensors found in the file")
    meta = {k: v for k, v in top.items() if v is not obj and k not in _WRAPPER_KEYS} \
        if isinstance(top, Mapping) and top is not obj else {}
    return WeightFile(state=state, meta=meta, vidnet=vidnet, where=where)


def read_state_dict(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """A weight file's flat ``{name: tensor}`` (see `read_weight_file`)."""
    return read_weight_file(source).state


def apply_architecture(model: nn.Module, meta: Mapping[str, Any], where: str) -> None:
    """Resize ``model`` to a structurally pruned model's channel counts when ``meta`` (a checkpoint's entries)
    carries them (``architecture``, see `vidnet.network.compress.channel_spec`); nothing otherwise.

    Raises:
        CheckpointError: the recorded channel counts do not fit the model (naming ``where``).
    """
    arch = meta.get("architecture")
    if not isinstance(arch, Mapping):
        return
    from vidnet.network.compress import apply_channel_spec

    try:
        apply_channel_spec(model, dict(arch))
    except UsageError as err:
        raise CheckpointError(f"{where}: pruned architecture does not fit the model: {err}") from None


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping | WeightFile,
    strict: bool = False,
) -> LoadReport:
    """Load every tensor whose name and shape match the model (after remapping an original key layout), and
    report the rest. A pruned model's file first resizes ``model`` to its channel counts.

    Args:
        model: the model to fill in place.
        path_or_state_dict: a weight file, a state dict (plain or wrapped, with or without prefixes, in
            vidnet's or an original code's key layout), or what `read_weight_file` returned.
        strict: raise unless every model entry was loaded and no checkpoint entry was skipped.

    Returns:
        A :class:`LoadReport` (its summary is logged at debug level; callers report it as they see fit).

    Raises:
        CheckpointError: unreadable file, or ``strict`` and the file does not fit exactly.
    """
    wf = path_or_state_dict if isinstance(path_or_state_dict, WeightFile) else read_weight_file(path_or_state_dict)
    apply_architecture(model, wf.meta, wf.where)
    state = wf.state
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
        raise CheckpointError(f"{wf.where}: does not fit {type(model).__name__} exactly: {report.summary()}")
    model.load_state_dict(matched, strict=False)
    _log.debug("%s: %s", wf.where, report.summary())
    return report


@dataclass
class LoadedModel:
    """A model built by :func:`load_model`, in eval mode.

    Attributes:
        model: the network.
        network: its registered name.
        file: what was read (None for fresh weights).
        report: what loading did (None for fresh weights).
    """

    model: nn.Module
    network: str
    file: WeightFile | None = None
    report: LoadReport | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The file's entries besides the weights (see `WeightFile.meta`)."""
        return self.file.meta if self.file is not None else {}

    @property
    def labels(self) -> dict[str, int]:
        """The file's label map (vidnet files), else empty."""
        return self.file.labels if self.file is not None else {}


def load_model(
    source: str | os.PathLike | Mapping | WeightFile | None = None,
    *,
    network: str | None = None,
    num_classes: int | None = None,
    strict: bool = True,
    **options: Any,
) -> LoadedModel:
    """Build a registered network and fill it from a weight file (or fresh, with ``source=None``).

    Args:
        source: a weight file or state dict (see the module docstring), or None for fresh weights.
        network: registered name; needed when the file does not name its network (weights from elsewhere).
        num_classes: classifier size; else the file's label count, its ``num_classes``, or the first
            dimension of its last 2-D weight (the classifier in every zoo model); 400 for fresh weights.
        strict: every weight of the model must come from the file and every tensor of the file must land.
        **options: builder options (e.g. ``width_mult``).

    Raises:
        CheckpointError: unreadable, refused or non-fitting file.
        UsageError: no network named anywhere, or an unknown one.
    """
    from vidnet.network import UnknownModelError, create_model

    if source is None:
        if network is None:
            raise UsageError("give --network or --checkpoint")
        try:
            return LoadedModel(create_model(network, num_classes=num_classes or 400, **options).eval(), network)
        except UnknownModelError as err:
            raise UsageError(f"--network: {err}") from None
    wf = read_weight_file(source)
    name = network or wf.network
    if name is None:
        raise UsageError(f"{wf.where}: the file does not name its network (weights from elsewhere): give "
                         "--network NAME (and --labels labels.json)")
    if num_classes is None:
        num_classes = len(wf.labels) or wf.meta.get("num_classes")
        if num_classes is not None and not (isinstance(num_classes, int) and 0 < num_classes <= 1_000_000):
            raise CheckpointError(f"{wf.where}: refused: num_classes = {str(num_classes)[:40]!r} is not a class count")
    if not num_classes:
        weights = [v for k, v in wf.state.items() if k.endswith("weight") and v.dim() >= 2]
        if not weights:
            raise CheckpointError(f"{wf.where}: no weight matrices found")
        num_classes = int(weights[-1].shape[0])
    try:
        with torch.random.fork_rng(devices=[]):  # a throw-away initialisation must not move the caller's RNG
            model = create_model(name, num_classes=int(num_classes), **options)
    except UnknownModelError as err:
        raise UsageError(f"--network: {err}") from None
    report = load_weights(model, wf)
    if strict and not report.complete:
        raise CheckpointError(f"{wf.where}: does not fit {name} with {num_classes} classes: {report.summary()}")
    return LoadedModel(model.eval(), name, wf, report)
