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
from collections.abc import Iterator, Mapping
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
    "check_labels",
    "check_preprocessing",
    "check_meta",
    "check_training",
    "walk",
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
    """One line on why the safe unpickler refused a file: the global it asked for (``posix.system``), or the
    opcode it stopped at (not a torch file at all). Never torch's own advice to load it unsafely."""
    text = str(err)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m is None:
        why = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
        reason = " ".join(why.group(1).split()) if why else _first_line(err)
        if reason.startswith("Unsupported operand"):
            return (f"{path}: not a torch checkpoint file (not a stream torch.save writes: "
                    f"{reason.replace('operand', 'pickle opcode').lower()})")
        return f"{path}: refused: {reason} (checkpoints are read as tensors and plain values only)"
    name = m.group(1)
    if name.startswith("numpy"):
        return (f"{path}: refused: it holds NumPy objects ({name}), as vidnet's first checkpoint format did; "
                + _UPGRADE.format(path))
    if name == "torch.storage._load_from_bytes":
        return (f"{path}: refused: tensors pickled with pickle.dump rather than torch.save (loading them calls "
                f"{name}, an unrestricted unpickler); save the state dict with torch.save")
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


_MAX_DEPTH = 64
"""Deepest nesting of containers a checkpoint may have (vidnet's own files nest fewer than 8 levels)."""


def walk(obj: Any, where: str = "checkpoint") -> Iterator[tuple[str, Any]]:
    """Every ``(path, value)`` of a nested structure of dicts, lists and tuples, each container once.

    A file read with ``weights_only=True`` may still hold shared or self-referencing containers (a dict that
    contains itself) or very deep nesting; both are refused rather than followed for ever.

    Raises:
        CheckpointError: a container holds itself, or the nesting is deeper than 64 levels.
    """
    seen: set[int] = set()
    stack = [(where, obj, 0)]
    while stack:
        name, value, depth = stack.pop()
        yield name, value
        if isinstance(value, dict | list | tuple):
            if id(value) in seen:
                if isinstance(value, dict | list):
                    raise CheckpointError(f"{where}: refused: a container is reached twice "
                                          f"({_short(name, where)}); checkpoints are trees of plain values")
                continue
            seen.add(id(value))
            if depth >= _MAX_DEPTH:
                raise CheckpointError(f"{where}: refused: nested deeper than {_MAX_DEPTH} levels "
                                      f"({_short(name, where)})")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack += [(f"{name}.{k}" if isinstance(value, dict) else f"{name}[{k}]", v, depth + 1)
                      for k, v in items]


def _short(name: str, where: str) -> str:
    inner = name.removeprefix(where) or "the top level"
    return inner if len(inner) <= 60 else inner[:28] + "..." + inner[-28:]


def _check_plain(obj: Any, where: str) -> None:
    """Refuse to write what the safe reader could not read back (a NumPy array, a module, a Path ...)."""
    for name, value in walk(obj, where):
        if isinstance(value, dict):
            bad = next((k for k in value if not isinstance(k, str | int)), None)
            if bad is not None:
                raise CheckpointError(f"{name}: key {bad!r} is not a str or int")
        elif not (value is None or isinstance(value, str | bool | int | float | list | tuple | torch.Tensor
                                               | torch.dtype | torch.device)):
            raise CheckpointError(f"{name}: {type(value).__name__} cannot be read back with weights_only=True")


_MAX_CLASSES = 1_000_000
_MAX_SIDE = 2048


def _bad(path: Any, key: str, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: refused: {key} {why}")


def _int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_labels(labels: Any, path: Any) -> dict[str, int]:
    """A label map as vidnet writes it: names -> ids 0..n-1, each id once; returned as a dict.

    Raises:
        CheckpointError: anything else (naming the file and the entry).
    """
    if not isinstance(labels, Mapping):
        raise _bad(path, "labels", f"is a {type(labels).__name__}, not a map of names to ids")
    if len(labels) > _MAX_CLASSES:
        raise _bad(path, "labels", f"has {len(labels)} entries")
    for name, i in labels.items():
        if not isinstance(name, str) or not _int(i, 0, len(labels) - 1):
            raise _bad(path, "labels", f"entry {name!r}: {i!r} is not a name mapped to an id in 0..{len(labels) - 1}")
    if len(set(labels.values())) != len(labels):
        raise _bad(path, "labels", "gives two names the same id")
    return dict(labels)


def check_preprocessing(pre: Any, path: Any) -> dict[str, Any]:
    """A preprocessing record (see `vidnet.data.preprocessing.Preprocessing.to_record`) with sane values.

    Raises:
        CheckpointError: a field of the wrong type or out of range (a clip side above 2048 pixels, a
            non-positive standard deviation ...).
    """
    if pre is None:
        return {}
    if not isinstance(pre, Mapping):
        raise _bad(path, "preprocessing", f"is a {type(pre).__name__}, not a record")
    checks = {
        "clip_length": lambda v: _int(v, 1, 4096),
        "clip_size": lambda v: _int(v, 1, _MAX_SIDE) or (isinstance(v, list | tuple) and len(v) == 2
                                                         and all(_int(x, 1, _MAX_SIDE) for x in v)),
        "val_frame_interval": lambda v: _int(v, 1, 10_000),
        "train_frame_interval": lambda v: isinstance(v, str | int) and not isinstance(v, bool),
        "mean": lambda v: isinstance(v, list | tuple) and len(v) == 3 and all(
            isinstance(x, int | float) and abs(x) < 1e6 for x in v),
        "std": lambda v: isinstance(v, list | tuple) and len(v) == 3 and all(
            isinstance(x, int | float) and 1e-6 < x < 1e6 for x in v),
        "family": lambda v: isinstance(v, str),
        "augment": lambda v: v is None or isinstance(v, str),
        "hflip": lambda v: isinstance(v, bool),
    }
    for key, ok in checks.items():
        if key in pre and pre[key] is not None and not ok(pre[key]):
            raise _bad(path, f"preprocessing.{key}", f"= {str(pre[key])[:60]!r} is out of range or of the wrong type")
    return dict(pre)


def check_meta(obj: Mapping[str, Any], path: Any) -> None:
    """The entries of a vidnet file that commands rely on: network, labels, preprocessing, architecture."""
    if "network" in obj and not isinstance(obj["network"], str):
        raise _bad(path, "network", "is not a name")
    if obj.get("labels") is not None:
        check_labels(obj["labels"], path)
    check_preprocessing(obj.get("preprocessing"), path)
    arch = obj.get("architecture")
    if arch is not None and not (isinstance(arch, Mapping) and all(
            isinstance(k, str) and isinstance(v, list) and all(_int(x, 1, 1 << 20) for x in v)
            for k, v in arch.items())):
        raise _bad(path, "architecture", "is not a map of layer names to channel counts")


def check_training(obj: Mapping[str, Any], path: Any) -> None:
    """What a resume reads: the position, the RNG states, the optimizer and the weights.

    Raises:
        CheckpointError: a missing or malformed entry (naming it).
    """
    check_meta(obj, path)
    for key in ("epoch", "iteration", "step"):
        if not _int(obj.get(key), 0, 1 << 40):
            raise _bad(path, key, f"= {obj.get(key)!r} is not a count")
    if not isinstance(obj.get("model"), Mapping) or not all(isinstance(v, torch.Tensor) for v in obj["model"].values()):
        raise _bad(path, "model", "is not a state dict")
    opt = obj.get("optimizer")
    if not (isinstance(opt, Mapping) and isinstance(opt.get("state"), Mapping)
            and isinstance(opt.get("param_groups"), list)):
        raise _bad(path, "optimizer", "is not an optimizer state")
    best = obj.get("best_top1")
    if best is not None and not (isinstance(best, int | float) and not isinstance(best, bool) and 0 <= best <= 1):
        raise _bad(path, "best_top1", f"= {best!r} is not an accuracy")
    sums = obj.get("epoch_sums")
    if sums is not None and not (isinstance(sums, list) and len(sums) == 4 and all(
            isinstance(v, int | float) for v in sums)):
        raise _bad(path, "epoch_sums", "is not four numbers")
    rng = obj.get("rng")
    try:
        py, npy = rng["python"], rng["numpy"]
        ok = (_int(py["version"], 0, 10) and isinstance(py["state"], torch.Tensor) and py["state"].numel() == 625
              and isinstance(npy["key"], torch.Tensor) and npy["key"].numel() == 624 and _int(npy["pos"], 0, 624)
              and isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise _bad(path, "rng", "is not the RNG state vidnet writes")


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
    check_training(obj, path)
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
    for _ in walk(obj, str(path)):  # bounded before the recursive conversion
        pass
    new = {k: _plain(v) for k, v in obj.items() if k != "format"}
    try:
        new["rng"] = _rng_to_plain(obj["rng"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its RNG state is not the one vidnet's first format wrote ({err!r})") from None
    check_training(new, path)
    return save_training(out or path, new)


def _plain(obj: Any, depth: int = 0) -> Any:
    """NumPy arrays and scalars to tensors and Python numbers, recursively (after `walk` bounded the tree)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    return obj


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds, for ``vidnet checkpoint info``: format, kind, network, classes, preprocessing,
    position, and the tensors' count, elements and bytes per top-level entry. Read safely (`read_file`)."""
    path = Path(path)
    obj = read_file(path)
    info: dict[str, Any] = {"file": str(path), "bytes": path.stat().st_size}
    if is_vidnet(obj):
        check_meta(obj, path)
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
        tensors = list(_tensors(value, str(path)))
        if tensors:
            entries[str(key)] = {"tensors": len(tensors), "elements": sum(t.numel() for t in tensors),
                                 "bytes": sum(t.numel() * t.element_size() for t in tensors)}
    info["entries"] = entries
    return info


def _tensors(obj: Any, where: str) -> Iterator[torch.Tensor]:
    return (v for _, v in walk(obj, where) if isinstance(v, torch.Tensor))


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


def prune_checkpoints(folder: str | os.PathLike, keep_last: int,
                      current: str | os.PathLike) -> list[tuple[Path, bool]]:
    """Keep the ``keep_last`` resumable checkpoints up to ``current`` (the one just written), delete the rest;
    returns ``(deleted path, whether it lay beyond current)``. ``keep_last`` 0 keeps everything; ``best.pth``
    is never touched.

    Checkpoints *beyond* ``current`` come from a continuation this run replaced (it resumed from an earlier
    one): they are deleted too, so that ``--resume auto`` continues this run, not the abandoned one.
    """
    if keep_last <= 0:
        return []
    found = find_checkpoints(folder)
    current = Path(current)
    position = next(((e, i) for e, i, p in found if p.name == current.name), None)
    if position is None:
        return []
    stale = [(p, True) for e, i, p in found if (e, i) > position]
    kept = [(p, False) for e, i, p in found if (e, i) <= position]
    old = stale + kept[:-keep_last]
    for p, _ in old:
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
