"""Writing evaluation results: confusion matrix (.npy, .csv, optional PNG), predictions.csv, analysis JSON.

Numbers in, files out: formatting for the console lives in the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vidnet._io import atomic_path, atomic_write_text
from vidnet.eval.metrics import Summary, topk_indices
from vidnet.eval.multiview import Predictions

__all__ = ["summary_dict", "write_confusion", "write_predictions_csv", "write_heatmap", "write_report"]


def summary_dict(s: Summary, class_names: list[str]) -> dict[str, Any]:
    """A JSON-ready dict of a `Summary` with class names instead of ids (the confusion matrix left out)."""
    def cls(c: Any) -> dict[str, Any]:
        return {"class": class_names[c.index], "accuracy": c.accuracy, "videos": c.support}

    return {
        "videos": s.n, **{f"top{k}": v for k, v in s.topk.items()}, "mean_class_accuracy": s.mean_class_accuracy,
        "loss": s.loss, "best": [cls(c) for c in s.best], "worst": [cls(c) for c in s.worst],
        "confused": [{"true": class_names[p.true], "predicted": class_names[p.predicted], "count": p.count}
                     for p in s.confused],
    }


def write_confusion(cm: np.ndarray, class_names: list[str], stem: str | os.PathLike) -> list[Path]:
    """``<stem>.npy`` and ``<stem>.csv`` (header row and first column: class names; rows are true classes)."""
    stem = Path(stem)
    npy = stem.with_suffix(".npy")
    with atomic_path(npy) as tmp, open(tmp, "wb") as f:
        np.save(f, cm)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, cm, strict=True):
        w.writerow([name, *row.tolist()])
    path = stem.with_suffix(".csv")
    atomic_write_text(path, buf.getvalue())
    return [npy, path]


def write_predictions_csv(preds: Predictions, log_probs: np.ndarray, path: str | os.PathLike, *, k: int = 5) -> Path:
    """One row per video: id, true label, then the top-k labels and their probabilities."""
    k = min(k, log_probs.shape[1])
    top = topk_indices(log_probs, k)
    probs = np.exp(log_probs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["video_id", "label", *[f"{c}{i + 1}" for i in range(k) for c in ("pred", "score")]])
    names = preds.class_names
    for vid, y, row, p in zip(preds.video_ids, preds.labels, top, probs, strict=True):
        cells: list[Any] = []
        for c in row:
            cells += [names[c], f"{p[c]:.6f}"]
        w.writerow([vid, names[y] if y >= 0 else "", *cells])
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def write_heatmap(cm: np.ndarray, class_names: list[str], path: str | os.PathLike) -> Path | None:
    """Row-normalised confusion heatmap as PNG; None when matplotlib is not installed (``vidnet[plot]``).

    The figure grows with the number of classes (0.12 inch per class, labels in 4-point type beyond 30
    classes) so that 101 classes stay readable.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = len(class_names)
    side = max(4.0, 0.12 * n + 2)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(rows, 1))
    fig, ax = plt.subplots(figsize=(side, side), dpi=150)
    ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    size = 4 if n > 30 else 8
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=size)
    ax.set_yticks(range(n), class_names, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(out: str | os.PathLike, results: dict[str, tuple[Predictions, Summary]], *, k: int = 5,
                 meta: dict[str, Any] | None = None) -> list[Path]:
    """All files of ``vidnet test`` for each protocol (``clip``, ``video``) in ``out``.

    Per protocol ``p``: ``p_confusion.npy/.csv``, ``p_predictions.csv``, ``p_logits.npz``; plus
    ``summary.json`` (every protocol's metrics and rankings, and ``meta``) and, when matplotlib is installed,
    ``<last protocol>_confusion.png``. Returns the paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summary: dict[str, Any] = dict(meta or {})
    for name, (preds, s) in results.items():
        written += write_confusion(s.confusion, preds.class_names, out / f"{name}_confusion")
        written.append(write_predictions_csv(preds, preds.log_probs(), out / f"{name}_predictions.csv", k=k))
        written.append(preds.save(out / f"{name}_logits.npz"))
        summary[name] = summary_dict(s, preds.class_names)
    last = list(results)[-1]
    png = write_heatmap(results[last][1].confusion, results[last][0].class_names, out / f"{last}_confusion.png")
    if png is not None:
        written.append(png)
    path = out / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    written.append(path)
    return written
