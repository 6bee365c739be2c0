"""Build a model from a registered name and/or a checkpoint file (used by ``vidnet compress`` and ``export``).

Accepted checkpoint layouts, tried in this order:

* a whole pickled module (``torch.save(model)``), which is what ``vidnet compress --out`` writes for pruned
  models, whose layer widths no registry builder reproduces;
* a dict with the weights under ``model``, ``state_dict`` or ``model_state`` and optionally the network
  name under ``network``/``arch`` (top level or inside ``config``) and ``num_classes``; with an
  ``architecture`` entry (the channel counts of a structurally pruned model, see
  `vidnet.network.compress.channel_spec`, written by ``vidnet compress --out`` and by training runs of pruned
  models) the registry build is resized to it before the weights are loaded;
* a bare state dict, with the network given by ``--network``.

A ``module.`` prefix (``nn.DataParallel`` / DDP checkpoints) is stripped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from vidnet.errors import UsageError

__all__ = ["load_model", "load_model_with_meta"]

_WEIGHT_KEYS = ("model", "state_dict", "model_state")


def _find(d: dict, *keys: str):
    for scope in (d, d.get("config") if isinstance(d.get("config"), dict) else {}):
        for key in keys:
            if isinstance(scope, dict) and scope.get(key) is not None:
                return scope[key]
    return None


def load_model(
    checkpoint: str | os.PathLike | None = None,
    *,
    network: str | None = None,
    num_classes: int | None = None,
    **options,
) -> tuple[nn.Module, str]:
    """Return ``(model in eval mode, label)``; see `load_model_with_meta`, whose arguments it takes."""
    model, label, _ = load_model_with_meta(checkpoint, network=network, num_classes=num_classes, **options)
    return model, label


def load_model_with_meta(
    checkpoint: str | os.PathLike | None = None,
    *,
    network: str | None = None,
    num_classes: int | None = None,
    **options,
) -> tuple[nn.Module, str, dict]:
    """Return ``(model in eval mode, label, meta)`` from a checkpoint and/or a registered network name.

    ``meta`` holds the checkpoint dict's entries other than the weights (``labels``, ``preprocessing``,
    ``config``, ``network``, ...; empty for fresh weights and whole pickled modules).

    Args:
        checkpoint: file written by ``torch.save`` (see the module docstring), or ``None`` for fresh weights.
        network: registered model name; needed when the checkpoint does not name it.
        num_classes: classifier size; taken from the checkpoint or inferred from its last weight when omitted.
        **options: builder options (e.g. ``width_mult``).

    Raises:
        UsageError: the file is missing or unreadable, or names no network and none was given.
    """
    from vidnet.network import create_model

    if checkpoint is None:
        if network is None:
            raise UsageError("give --network or --checkpoint")
        return create_model(network, num_classes=num_classes or 400, **options).eval(), network, {}
    path = Path(checkpoint)
    if not path.is_file():
        raise UsageError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UsageError(f"{path}: not a torch checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(obj, nn.Module):
        return obj.eval(), path.stem, {}
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: expected a module or a dict, found {type(obj).__name__}")
    state = next((obj[k] for k in _WEIGHT_KEYS if isinstance(obj.get(k), dict)), obj)
    meta = {k: v for k, v in obj.items() if k not in _WEIGHT_KEYS} if state is not obj else {}
    if isinstance(obj.get("model"), nn.Module):
        return obj["model"].eval(), path.stem, meta
    network = network or _find(obj, "network", "arch")
    if network is None:
        raise UsageError(f"{path}: the checkpoint does not name its network; pass --network")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if num_classes is None:
        num_classes = _find(obj, "num_classes")
    if num_classes is None:
        # The classifier is the last 2-D weight in registration order for every zoo model.
        weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]
        if not weights:
            raise UsageError(f"{path}: no weight tensors found")
        num_classes = int(weights[-1].shape[0])
    model = create_model(network, num_classes=int(num_classes), **options)
    if isinstance(meta.get("architecture"), dict):
        from vidnet.network.compress import apply_channel_spec

        apply_channel_spec(model, meta["architecture"])
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches, e.g. a pruned model's weights without its architecture
        raise UsageError(f"{path}: does not fit {network}: {str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise UsageError(f"{path}: does not fit {network} ({len(missing)} missing keys, e.g. "
                         f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return model.eval(), network, meta
