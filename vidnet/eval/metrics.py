"""Classification metrics on score arrays, in plain numpy.

Every function takes ``scores [N, C]`` (logits, probabilities or log-probabilities: only their order
matters) and integer ``labels [N]``, or a confusion matrix built from them.

Ties. Equal scores are ranked by class index, lower first (a stable sort of the negated scores). So a
top-k hit on tied scores is decided the same way on every machine and every run, and an all-equal row
predicts class 0. This is what ``torch.topk`` is *not* guaranteed to do, which is why the metrics do not
use it.

Ordering of the rankings (`best_worst_classes`, `most_confused_pairs`) is documented on each function and
is total, so the printed tables never depend on hash or sort-stability accidents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vidnet.errors import UsageError

__all__ = [
    "softmax",
    "log_softmax",
    "topk_indices",
    "topk_accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "mean_class_accuracy",
    "best_worst_classes",
    "most_confused_pairs",
    "ClassScore",
    "ConfusedPair",
    "Summary",
    "summarize",
    "improves_best",
    "best_index",
]


def _check(scores: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise UsageError(f"scores must be [N, C] with C >= 1, got shape {scores.shape}")
    if labels is None:
        return scores, None
    labels = np.asarray(labels)
    if labels.shape != (scores.shape[0],) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise UsageError(f"labels must be {scores.shape[0]} integers, got shape {labels.shape} {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise UsageError(f"labels must be in 0..{scores.shape[1] - 1}, got {labels.min()}..{labels.max()}")
    return scores, labels.astype(np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from logits, computed in float64 after subtracting the maximum (no overflow)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Log-probabilities from logits (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best classes of each row, best first; ties go to the lower class index.

    Returns:
        int64 ``[N, min(k, C)]``.
    """
    scores, _ = _check(scores)
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    # Stable sort of -scores: equal scores keep ascending class order.
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])].astype(np.int64)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the ``k`` best classes, for each ``k`` (capped at C).

    Returns:
        ``{k: accuracy}``; 0.0 for every k when there are no rows.
    """
    scores, labels = _check(scores, labels)
    if not ks:
        return {}
    top = topk_indices(scores, max(ks))
    hits = top == labels[:, None]
    n = max(len(labels), 1)
    return {int(k): float(hits[:, :k].any(axis=1).sum() / n) for k in ks}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[C, C]``: row = true class, column = predicted class (int64)."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise UsageError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise UsageError(f"{name} must be in 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (diagonal / row sum); NaN for a class with no samples."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean of `per_class_accuracy` over the classes that have samples (NaN when none has)."""
    acc = per_class_accuracy(cm)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")


@dataclass(frozen=True)
class ClassScore:
    """One class's accuracy: its id, accuracy (recall) and number of samples."""

    index: int
    accuracy: float
    support: int


@dataclass(frozen=True)
class ConfusedPair:
    """``count`` samples of class ``true`` predicted as ``predicted``."""

    true: int
    predicted: int
    count: int


def best_worst_classes(cm: np.ndarray, n: int = 10) -> tuple[list[ClassScore], list[ClassScore]]:
    """The ``n`` best and ``n`` worst classes by accuracy, among classes with samples.

    Best: accuracy descending, then more samples first, then lower index. Worst: accuracy ascending, then
    more samples first (a class failing on many videos matters more), then lower index. A class can be in
    both lists when there are fewer than ``2n`` classes.
    """
    cm = np.asarray(cm)
    acc, support = per_class_accuracy(cm), cm.sum(axis=1)
    present = [ClassScore(int(i), float(acc[i]), int(support[i])) for i in range(len(acc)) if support[i] > 0]
    best = sorted(present, key=lambda c: (-c.accuracy, -c.support, c.index))[:n]
    worst = sorted(present, key=lambda c: (c.accuracy, -c.support, c.index))[:n]
    return best, worst


def most_confused_pairs(cm: np.ndarray, n: int = 10) -> list[ConfusedPair]:
    """The ``n`` largest off-diagonal counts (count descending, then true class, then predicted class).

    Pairs with a zero count are never listed.
    """
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    t, p = np.nonzero(off)
    pairs = [ConfusedPair(int(a), int(b), int(off[a, b])) for a, b in zip(t, p, strict=True)]
    return sorted(pairs, key=lambda q: (-q.count, q.true, q.predicted))[:n]


@dataclass
class Summary:
    """Everything `summarize` computes for one set of scores.

    Attributes:
        n: number of samples.
        topk: ``{k: accuracy}``.
        mean_class_accuracy: mean per-class accuracy.
        loss: mean negative log-likelihood, or None when the scores are not log-probabilities.
        confusion: the confusion matrix of the top-1 predictions.
        best: best classes; worst: worst classes; confused: most confused pairs.
    """

    n: int
    topk: dict[int, float]
    mean_class_accuracy: float
    loss: float | None
    confusion: np.ndarray
    best: list[ClassScore] = field(default_factory=list)
    worst: list[ClassScore] = field(default_factory=list)
    confused: list[ConfusedPair] = field(default_factory=list)


def summarize(
    log_probs: np.ndarray, labels: np.ndarray, *, ks: Sequence[int] = (1, 5), rank: int = 10
) -> Summary:
    """Top-k, mean class accuracy, NLL loss, confusion matrix and rankings of ``log_probs [N, C]``.

    Args:
        log_probs: log-probabilities (the loss is their mean negative value at the label).
        labels: true class of each row.
        ks: which top-k accuracies to compute.
        rank: how many best/worst classes and confused pairs to keep.
    """
    log_probs, labels = _check(log_probs, labels)
    num_classes = log_probs.shape[1]
    cm = confusion_matrix(labels, topk_indices(log_probs, 1)[:, 0], num_classes)
    loss = float(-log_probs[np.arange(len(labels)), labels].mean()) if len(labels) else None
    best, worst = best_worst_classes(cm, rank)
    return Summary(n=len(labels), topk=topk_accuracy(log_probs, labels, ks),
                   mean_class_accuracy=mean_class_accuracy(cm), loss=loss, confusion=cm,
                   best=best, worst=worst, confused=most_confused_pairs(cm, rank))


def improves_best(top1: float, best: float | None) -> bool:
    """The one rule for a run's best epoch (the trainer's ``best.pth``, the report's "best epoch"): the first
    validation is the best so far (``best`` None), whatever its top-1, so every validated run has a ``best.pth``;
    a later one is the new best when its top-1 is strictly higher, so a tie keeps the earlier epoch. NaN never
    wins."""
    return top1 == top1 and (best is None or top1 > best)


def best_index(top1: Sequence[float]) -> int | None:
    """Index of the best of successive validations under `improves_best`; None when there is none (no
    validation, or only NaN)."""
    best: float | None = None
    index = None
    for i, value in enumerate(top1):
        if improves_best(value, best):
            best, index = value, i
    return index
