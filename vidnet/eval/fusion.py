"""Late fusion of saved predictions of several models (the seed's "single-frame, 3D, combined" table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from vidnet.errors import UsageError, VidnetError
from vidnet.eval.multiview import Predictions

__all__ = ["align", "fuse_predictions", "FusionMethod"]

FusionMethod = Literal["mean", "logsum"]


def align(models: Sequence[Predictions]) -> list[np.ndarray | None]:
    """Where each model's videos are, in the first model's order: ``model.log_probs()[idx]`` lines up with
    model 1 (None: already in that order). Videos are matched by their unique store key.

    Raises:
        VidnetError: the models cover different videos, labels or classes, or a file repeats a key (a file
            written before keys existed, keyed by an id that repeats across segments of one source video).
    """
    first = models[0]
    for k, m in enumerate(models):
        dup = m.duplicate_keys()
        if dup:
            raise VidnetError(f"model {k + 1} repeats video key {dup[0]!r} ({len(dup)} keys repeat): written by an "
                              "older vidnet that keyed videos by id; run `vidnet test` again to key them by store")
    order = set(first.keys)
    out: list[np.ndarray | None] = []
    for k, m in enumerate(models):
        if m.class_names != first.class_names:
            raise VidnetError(f"model {k + 1} has other classes than model 1")
        if set(m.keys) != order:
            missing = sorted(order - set(m.keys)) or sorted(set(m.keys) - order)
            raise VidnetError(f"model {k + 1} covers other videos than model 1 ({len(m.keys)} against "
                              f"{len(order)}; e.g. {missing[0]!r} is in one only)")
        idx = None
        if m.keys != first.keys:
            pos = {v: i for i, v in enumerate(m.keys)}
            idx = np.array([pos[v] for v in first.keys])
        labels = m.labels if idx is None else m.labels[idx]
        if not np.array_equal(labels, first.labels):
            raise VidnetError(f"model {k + 1} gives other true labels than model 1")
        out.append(idx)
    return out


def fuse_predictions(
    models: Sequence[Predictions], *, weights: Sequence[float] | None = None, method: FusionMethod = "mean"
) -> Predictions:
    """Combine the video scores of several models into one `Predictions` (one view: the fused log-probs).

    Each model's video score is first its own multi-view average (`Predictions.log_probs`).

    Args:
        models: predictions of the same videos (matched by their unique store key, in the first model's order)
            and classes.
        weights: one non-negative weight per model (normalised to sum 1); default equal.
        method: ``mean``: weighted mean of probabilities; ``logsum``: weighted sum of log-probabilities
            (a product of experts), renormalised.

    Raises:
        VidnetError: see `align`.
        UsageError: bad weights or method.
    """
    if len(models) < 1:
        raise UsageError("nothing to fuse")
    if method not in ("mean", "logsum"):
        raise UsageError(f"--method {method!r}: use mean or logsum")
    w = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(models),) or (w < 0).any() or w.sum() <= 0:
        raise UsageError(f"--weights: need {len(models)} non-negative numbers, not all zero, got {list(weights or [])}")
    w = w / w.sum()
    first = models[0]
    scores = [m.log_probs() if idx is None else m.log_probs()[idx] for m, idx in zip(models, align(models),
                                                                                       strict=True)]
    stack = np.stack(scores)  # [models, videos, classes]
    if method == "mean":
        fused = np.log(np.maximum(np.tensordot(w, np.exp(stack), axes=1), 1e-300))
    else:
        fused = np.tensordot(w, stack, axes=1)
    return Predictions(keys=list(first.keys), labels=first.labels.copy(), class_names=list(first.class_names),
                       logits=fused[:, None].astype(np.float32),
                       model=f"fused ({method}): " + " + ".join(m.model or "?" for m in models),
                       video_ids=list(first.video_ids or []), time_start=first.time_start, time_end=first.time_end)
