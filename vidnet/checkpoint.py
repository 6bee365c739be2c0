"""Checkpoints: the format, the one reader, the one writer, and the run-folder layout.

A checkpoint is a file from somebody else's machine ("here are my Kinetics weights"), so it is read as data,
never as code: every file goes through :func:`read_file`, which calls ``torch.load(..., weights_only=True)``.
PyTorch's restricted unpickler then builds only tensors and plain containers (dict, list, tuple, str, int,
float, bool, None) and refuses any other global, so a pickle whose ``__reduce__`` would call ``os.system`` is
an error, not a command.

vidnet writes two kinds of file, both plain under that rule (format ``vidnet-2``):

* ``kind: "train"`` (``ep-0003.pth``, ``ep-0003-it-000120.pth``): everything a resume needs to continue
  exactly as an uninterrupted run would: model, optimizer, gradient-scaler and EMA states, the position
  (epoch, iteration within it, optimizer step), the RNG states of Python, NumPy and torch (as ints and
  tensors), the resolved config, the label map and the preprocessing record. The learning rate and the
  multigrid shape are pure functions of the position, and the batch order and augmentation are seeded by
  (seed, epoch, index), so the position *is* the scheduler and sampler state.
* ``kind: "model"`` (``best.pth``, ``vidnet compress --out``): the weights and what inference needs
  (network, labels, preprocessing, a pruned model's channel counts), without the optimizer: a fraction of the
  size.

Checkpoints of format ``vidnet-train-1`` (vidnet before this format) hold NumPy arrays, which the safe reader
refuses. ``vidnet checkpoint upgrade FILE --trust`` rewrites such a file, once, for a file the user trusts;
even then only NumPy's array and scalar constructors are admitted besides the plain types.

Run folder: ``<model-dir>/<dataset folder name>/<network>/`` with ``checkpoints/``, ``config.yaml``,
``train.log``, ``train.csv``, ``val.csv``. Writes are atomic (temporary file, then rename), so a crash or a
kill during a save leaves the previous file intact.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidnet._io import atomic_path
from vidnet.errors import VidnetError

__all__ = [
    "FORMAT",
    "LEGACY_FORMATS",
    "CHECKPOINT_DIR",
    "BEST_NAME",
    "CheckpointError",
    "read_file",
    "write_file",
    "save_training",
    "load_training",
    "save_model",
    "is_vidnet",
    "upgrade",
    "describe",
    "checkpoint_name",
    "find_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "run_folder",
    "rng_state",
    "set_rng_state",
    "unwrap",
]

FORMAT = "vidnet-2"
"""Format of every file vidnet writes now; readable with ``torch.load(..., weights_only=True)`` alone."""
LEGACY_FORMATS = ("vidnet-train-1",)
"""Formats that need ``vidnet checkpoint upgrade FILE --trust`` before use."""
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pth"
_NAME = re.compile(r"^ep-(\d{4,})(?:-it-(\d{6,}))?\.pth$")
_UPGRADE = "if it is a vidnet checkpoint you trust, convert it once with `vidnet checkpoint upgrade {} --trust`"


class CheckpointError(VidnetError):
    """A checkpoint is missing, unreadable, refused as unsafe, or does not fit the model it is used for."""


# -- reading and writing ----------------------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """One line on why a pickle was refused, naming the global it asked for (``posix.system``)."""
    m = re.search(r"GLOBAL ([\w.]+)", str(err))
    name = m.group(1) if m else _first_line(err)
    if name.startswith("numpy"):
        return (f"{path}: refused: it holds NumPy objects ({name}), as vidnet's first checkpoint format did; "
                + _UPGRADE.format(path))
    return (f"{path}: refused: loading it would call {name} (checkpoints are read as tensors and plain values "
            "only; nothing in a file is run)")


def read_file(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """Load a torch file onto the CPU without executing any code stored in it.

    Args:
        path: the file.
        what: how messages name it (``checkpoint``, ``weights``).

    Raises:
        CheckpointError: missing file, not a torch file, or a pickle that asks for anything but tensors and
            plain containers (refused, with the global it asked for).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found" if not path.exists() else f"{path}: not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, KeyError,
            IndexError, TypeError, AttributeError) as err:
        # torch reports a truncated zip, a foreign file or a bad pickle stream with several exception types
        raise CheckpointError(f"{path}: not a readable torch {what} file ({_first_line(err)})") from None


def _legacy_globals() -> list[Any]:
    """What a format-1 checkpoint needs beyond the plain types: NumPy arrays and scalars (RNG state, sums)."""
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    out: list[Any] = [multiarray._reconstruct, np.ndarray, np.dtype, multiarray.scalar]
    out += [type(np.dtype(t)) for t in (np.uint32, np.float64, np.int64, np.float32, np.int32, np.bool_)]
    return out


def _read_legacy(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, err).replace("; " + _UPGRADE.format(path), "")) from None
    except Exception as err:  # noqa: BLE001 - see read_file
        raise CheckpointError(f"{path}: not a readable torch checkpoint file ({_first_line(err)})") from None


def write_file(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Write ``obj`` (tensors and plain containers only) atomically; returns the path."""
    path = Path(path)
    _check_plain(obj, "checkpoint")
    with atomic_path(path) as tmp:
        torch.save(dict(obj), tmp)
    return path


def _check_plain(obj: Any, where: str) -> None:
    """Refuse to write what the safe reader could not read back (a NumPy array, a module, a Path ...)."""
    if obj is None or isinstance(obj, str | bool | int | float | torch.Tensor | torch.dtype | torch.device):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} cannot be read back with weights_only=True")


def is_vidnet(obj: Any) -> bool:
    """Whether ``obj`` (what `read_file` returned) is a file vidnet wrote in the current format."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def save_training(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write a resumable training checkpoint (``state``: see the module docstring) atomically."""
    return write_file(path, {"format": FORMAT, "kind": "train", **state})


def save_model(path: str | os.PathLike, *, model: Mapping[str, torch.Tensor], network: str,
               labels: Mapping[str, int] | None = None, preprocessing: Mapping[str, Any] | None = None,
               **extra: Any) -> Path:
    """Write weights plus what inference needs (no optimizer state) atomically.

    Args:
        model: the state dict.
        network: registered model name.
        labels: label name -> id.
        preprocessing: the record of `vidnet.data.preprocessing.Preprocessing.to_record`.
        **extra: other plain entries (``architecture`` of a pruned model, ``config``, ``epoch`` ...).
    """
    return write_file(path, {"format": FORMAT, "kind": "model", "model": dict(model), "network": network,
                             "labels": dict(labels or {}), "preprocessing": dict(preprocessing or {}), **extra})


def load_training(path: str | os.PathLike) -> dict[str, Any]:
    """Read a resumable training checkpoint.

    Raises:
        CheckpointError: unreadable or unsafe file, a format-1 file (with how to upgrade it), weights without
            training state (``best.pth``), or not a vidnet checkpoint.
    """
    path = Path(path)
    obj = read_file(path)
    if isinstance(obj, dict) and obj.get("format") in LEGACY_FORMATS:  # pragma: no cover - refused above
        raise CheckpointError(f"{path}: format {obj['format']}; {_UPGRADE.format(path)}")
    if not is_vidnet(obj):
        raise CheckpointError(f"{path}: not a vidnet training checkpoint (weights from elsewhere initialise a "
                              "run with --pretrained-3d)")
    if obj.get("kind") != "train":
        raise CheckpointError(f"{path}: holds weights only (no optimizer or position); resume from an "
                              f"ep-*.pth file, or start a new run from it with --pretrained-3d")
    return obj


def upgrade(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Rewrite a format-1 checkpoint (``vidnet-train-1``) in the current format; ``out`` defaults to ``path``.

    Only for files the caller trusts: besides tensors and plain containers, NumPy arrays and scalars are
    admitted (format 1 stored RNG states and metric sums that way); any other object is still refused.

    Raises:
        CheckpointError: unreadable, refused, already current, or not a vidnet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    obj = _read_legacy(path)
    if is_vidnet(obj):
        raise CheckpointError(f"{path}: already in format {FORMAT}; nothing to do")
    if not isinstance(obj, dict) or obj.get("format") not in LEGACY_FORMATS:
        raise CheckpointError(f"{path}: not a vidnet checkpoint of format {', '.join(LEGACY_FORMATS)}")
    new = {k: _plain(v) for k, v in obj.items() if k != "format"}
    if isinstance(obj.get("rng"), dict):
        new["rng"] = _rng_to_plain(obj["rng"])
    return save_training(out or path, new)


def _plain(obj: Any) -> Any:
    """NumPy arrays and scalars to tensors and Python numbers, recursively."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds, for ``vidnet checkpoint info``: format, kind, network, classes, preprocessing,
    position, and the tensors' count, elements and bytes per top-level entry. Read safely (`read_file`)."""
    path = Path(path)
    obj = read_file(path)
    info: dict[str, Any] = {"file": str(path), "bytes": path.stat().st_size}
    if is_vidnet(obj):
        info.update(format=FORMAT, kind=obj.get("kind"), network=obj.get("network"))
        labels = obj.get("labels") or {}
        info["classes"] = len(labels)
        info["labels"] = [name for name, _ in sorted(labels.items(), key=lambda kv: kv[1])]
        info["preprocessing"] = obj.get("preprocessing") or {}
        for key in ("epoch", "iteration", "step", "best_top1"):
            if key in obj:
                info[key] = obj[key]
        if isinstance(obj.get("architecture"), dict):
            info["pruned"] = True
    else:
        info.update(format="foreign", kind="weights")
    entries = {}
    for key, value in (obj.items() if isinstance(obj, dict) else [("(root)", obj)]):
        tensors = list(_tensors(value))
        if tensors:
            entries[str(key)] = {"tensors": len(tensors), "elements": sum(t.numel() for t in tensors),
                                 "bytes": sum(t.numel() * t.element_size() for t in tensors)}
    info["entries"] = entries
    return info


def _tensors(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


# -- the run folder -----------------------------------------------------------------------------------------


def run_folder(model_dir: str | os.PathLike, dataset: str | os.PathLike, network: str) -> Path:
    """``<model-dir>/<dataset folder name>/<network>``: checkpoints, CSV files, config and log of a run."""
    name = Path(dataset).resolve().name or "dataset"
    return Path(model_dir) / name / network


def checkpoint_name(epoch: int, iteration: int = 0) -> str:
    """File name for a checkpoint taken after ``epoch`` whole epochs plus ``iteration`` iterations."""
    return f"ep-{epoch:04d}.pth" if iteration == 0 else f"ep-{epoch:04d}-it-{iteration:06d}.pth"


def find_checkpoints(folder: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """``(epoch, iteration, path)`` of the resumable checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(1)), int(m.group(2) or 0), p))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint furthest into training in ``folder``, or None."""
    found = find_checkpoints(folder)
    return found[-1][2] if found else None


def prune_checkpoints(folder: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` most recent resumable checkpoints (``best.pth`` is never touched);
    returns the deleted paths. ``keep_last`` 0 keeps everything."""
    if keep_last <= 0:
        return []
    old = [p for *_, p in find_checkpoints(folder)[:-keep_last]]
    for p in old:
        p.unlink(missing_ok=True)
    return old


# -- RNG states as plain values -----------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU) and every CUDA device, as ints, floats and tensors."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rng_to_plain(old: Mapping[str, Any]) -> dict[str, Any]:
    """Format 1's RNG entry (Python tuple, NumPy legacy tuple) as `rng_state` writes it."""
    version, internal, gauss = old["python"]
    _, key, pos, has_gauss, cached = old["numpy"]
    out = {"python": {"version": int(version), "state": torch.tensor(list(internal), dtype=torch.int64),
                      "gauss": gauss},
           "numpy": {"key": torch.as_tensor(np.asarray(key).astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "gauss": float(cached)},
           "torch": old["torch"]}
    if "cuda" in old:
        out["cuda"] = list(old["cuda"])
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
                         "has_gauss": int(npy["has_gauss"]), "gauss": float(npy["gauss"])})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        else:
            return model
