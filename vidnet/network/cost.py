"""Model cost: parameter counts and multiply-accumulates, measured without allocating real weights."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from vidnet._io import atomic_write_text
from vidnet.network._registry import create_model

__all__ = ["count_parameters", "count_macs", "model_cost", "cached_model_costs", "cost_cache_path"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, clip: tuple[int, int, int], *, batch: int = 1) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a ``batch x 3 x T x H x W`` clip.

    Counted by ``torch.utils.flop_counter`` (matrix products and convolutions, LSTM/GRU included through
    their matrix products) and halved: one MAC is two FLOPs. Normalisation, pooling and element-wise ops are
    not counted, so figures sit slightly below thop's (which counts BatchNorm).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(batch, 3, *clip, device=device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_cost(name: str, *, num_classes: int = 400, clip: tuple[int, int, int] | None = (16, 112, 112),
               **options) -> tuple[int, int | None]:
    """(parameters, MACs) of a registered model; MACs is None when ``clip`` is None.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic), so even the
    billion-parameter models cost nothing; a model whose forward pass cannot run on ``meta`` (data-dependent
    control flow) is measured with real CPU tensors instead.
    """
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    params = count_parameters(model)
    if clip is None:
        return params, None
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, TypeError):
        with torch.device("meta"):
            return params, count_macs(model, clip)
    model = create_model(name, num_classes=num_classes, **options)
    return params, count_macs(model, clip)


# -- a cache of counts -----------------------------------------------------------------------------------------
# Building a model, even on the meta device, takes a fraction of a second; counting the zoo's MACs takes minutes.
# A count depends only on the code that builds the model, so counts are kept in a JSON file keyed by a digest of
# vidnet.network's sources and the torch version: any change to the code starts a new cache.


def cost_cache_path() -> Path:
    """``$VIDNET_CACHE_DIR/model-costs.json`` (default ``$XDG_CACHE_HOME/vidnet``, else ``~/.cache/vidnet``)."""
    root = os.environ.get("VIDNET_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidnet"
    return Path(root) / "model-costs.json"


def _code_digest() -> str:
    digest = hashlib.sha256(torch.__version__.encode())
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cost_entry(args: tuple[str, int, tuple[int, int, int] | None]) -> tuple[int, int | None]:
    name, num_classes, clip = args
    return model_cost(name, num_classes=num_classes, clip=clip)


def cached_model_costs(names: list[str], *, num_classes: int = 400, clip: tuple[int, int, int] | None = None,
                       processes: int = 0, progress: Callable[[int, int], None] | None = None
                       ) -> dict[str, tuple[int, int | None]]:
    """`model_cost` of several registered models, from the cache where it has them, else counted (in up to
    ``processes`` processes, 0 = all cores) and added to it.

    Args:
        names: Registered names.
        num_classes: Classifier size.
        clip: ``(T, H, W)`` for MACs, or None for parameters only.
        progress: Called with ``(done, total)`` as counts arrive.

    A missing, unreadable or foreign cache file is ignored (and replaced); one that cannot be written only
    costs the next call the same time.
    """
    path, digest = cost_cache_path(), _code_digest()
    try:
        cache = json.loads(path.read_text())
        entries = cache["entries"] if cache.get("code") == digest else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = {}

    def key(name: str) -> str:
        return f"{name}|{num_classes}|{'x'.join(map(str, clip)) if clip else '-'}"

    out = {n: tuple(entries[key(n)]) for n in names if isinstance(entries.get(key(n)), list)}
    missing = [n for n in names if n not in out]
    if missing:
        jobs = [(n, num_classes, clip) for n in missing]
        workers = min(len(jobs), processes or os.cpu_count() or 1)
        done = len(out)
        with contextlib.ExitStack() as stack:
            if workers > 1:
                from vidnet._mp import process_pool

                results = stack.enter_context(process_pool(workers)).imap(_cost_entry, jobs)
            else:
                results = map(_cost_entry, jobs)
            for n, cost in zip(missing, results, strict=True):
                out[n] = cost
                done += 1
                if progress is not None:
                    progress(done, len(names))
        entries.update({key(n): list(out[n]) for n in missing})
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"code": digest, "entries": entries}, sort_keys=True))
    return {n: out[n] for n in names}
