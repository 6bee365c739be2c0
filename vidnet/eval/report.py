"""Writing evaluation results: confusion matrix (.npy, .csv, optional PNG), predictions (.csv, .jsonl), JSON.

Numbers in, files out: formatting for the console lives in the CLI.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vidnet._io import atomic_path, atomic_write_text
from vidnet.errors import VidnetError
from vidnet.eval.metrics import Summary, topk_indices
from vidnet.eval.multiview import Predictions

__all__ = ["summary_dict", "write_confusion", "write_predictions_csv", "write_predictions_jsonl", "write_heatmap",
           "write_report", "PlotUnavailable", "import_pyplot"]

PLOT_HINT = "pip install 'vidnet[plot]'"


class PlotUnavailable(ImportError):
    """matplotlib is not installed (the optional ``vidnet[plot]`` extra)."""


def import_pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display needed).

    Raises:
        PlotUnavailable: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(f"matplotlib is not installed: {PLOT_HINT}") from None
    return plt


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


def _time(t: float) -> float | None:
    return None if math.isnan(t) else float(t)


def write_predictions_csv(preds: Predictions, log_probs: np.ndarray, path: str | os.PathLike, *, k: int = 5) -> Path:
    """One row per video: its unique store key, index id, segment times (empty: the whole video), true label,
    then the top-k labels and their probabilities."""
    k = min(k, log_probs.shape[1])
    top = topk_indices(log_probs, k)
    probs = np.exp(log_probs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", "video_id", "time_start", "time_end", "label",
                *[f"{c}{i + 1}" for i in range(k) for c in ("pred", "score")]])
    names = preds.class_names
    for key, vid, t0, t1, y, row, p in zip(preds.keys, preds.video_ids, preds.time_start, preds.time_end,
                                           preds.labels, top, probs, strict=True):
        cells: list[Any] = []
        for c in row:
            cells += [names[c], f"{p[c]:.6f}"]
        times = ["" if _time(t) is None else f"{t:g}" for t in (t0, t1)]
        w.writerow([key, vid, *times, names[y] if y >= 0 else "", *cells])
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def write_predictions_jsonl(preds: Predictions, log_probs: np.ndarray, path: str | os.PathLike, *,
                            k: int = 5) -> Path:
    """One JSON object per line and video: ``key`` (the unique store key), ``video_id``, ``time_start`` and
    ``time_end`` (None: the whole video), ``label`` (None when unknown), ``top`` (``k`` pairs of ``label`` and
    probability ``score``, best first, full precision)."""
    k = min(k, log_probs.shape[1])
    top = topk_indices(log_probs, k)
    names = preds.class_names
    lines = []
    for key, vid, t0, t1, y, row, lp in zip(preds.keys, preds.video_ids, preds.time_start, preds.time_end,
                                            preds.labels, top, log_probs, strict=True):
        lines.append(json.dumps({"key": key, "video_id": vid, "time_start": _time(t0), "time_end": _time(t1),
                                 "label": names[y] if y >= 0 else None,
                                 "top": [{"label": names[c], "score": float(np.exp(lp[c]))} for c in row]}))
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


#: Heatmap geometry: inches per class and the largest tick-label size, in points.
_CELL_IN, _MAX_LABEL_PT = 0.14, 9.0


def write_heatmap(cm: np.ndarray, class_names: list[str], path: str | os.PathLike, *, title: str = "") -> Path:
    """Row-normalised confusion heatmap as PNG.

    Readable for 101 classes: the figure grows with the number of classes (0.14 inch per class, about 2.4k
    pixels square at 101) and every class keeps its tick label, sized to its cell (at most 9 pt, about 6.9 pt
    at 0.14 inch) with the predicted-class labels rotated 90 degrees; margins grow with the longest name.

    Raises:
        PlotUnavailable: matplotlib is not installed (``vidnet[plot]``).
    """
    plt = import_pyplot()
    n = len(class_names)
    cm = np.asarray(cm)
    if cm.shape != (n, n):
        raise VidnetError(f"confusion matrix of shape {cm.shape} for {n} class names")
    font = min(_MAX_LABEL_PT, _CELL_IN * 72 * 0.68)
    margin = 0.6 + max((len(c) for c in class_names), default=1) * font * 0.6 / 72  # label width, inches
    grid = max(3.0, _CELL_IN * n)
    fig = plt.figure(figsize=(grid + margin + 1.4, grid + margin + 0.6), dpi=150)
    # Fixed axes in inches (not tight_layout), so the label margins are exactly what the names need.
    w, h = fig.get_size_inches()
    ax = fig.add_axes((margin / w, margin / h, grid / w, grid / h))
    image = ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    cax = fig.add_axes(((margin + grid + 0.2) / w, margin / h, 0.2 / w, grid / h))
    fig.colorbar(image, cax=cax, label="fraction of the true class")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(out: str | os.PathLike, results: dict[str, tuple[Predictions, Summary]], *, k: int = 5,
                 meta: dict[str, Any] | None = None, titles: dict[str, str] | None = None) -> list[Path]:
    """All files of ``vidnet test`` for each protocol (``clip``, ``video``, ``frames``, ``sequence``) in ``out``.

    Per protocol ``p``: ``p_confusion.npy/.csv``, ``p_predictions.csv``, ``p_predictions.jsonl``,
    ``p_logits.npz`` and, when matplotlib is installed, ``p_confusion.png``; plus ``summary.json`` (``meta``,
    then each protocol's title, metrics and rankings). Returns the paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    titles = titles or {}
    written: list[Path] = []
    summary: dict[str, Any] = dict(meta or {})
    for name, (preds, s) in results.items():
        lp = preds.log_probs()
        written += write_confusion(s.confusion, preds.class_names, out / f"{name}_confusion")
        written.append(write_predictions_csv(preds, lp, out / f"{name}_predictions.csv", k=k))
        written.append(write_predictions_jsonl(preds, lp, out / f"{name}_predictions.jsonl", k=k))
        written.append(preds.save(out / f"{name}_logits.npz"))
        summary[name] = {"protocol": titles.get(name, name), **summary_dict(s, preds.class_names)}
        with contextlib.suppress(PlotUnavailable):
            written.append(write_heatmap(s.confusion, preds.class_names, out / f"{name}_confusion.png",
                                         title=f"{preds.model}: {titles.get(name, name)}"))
    path = out / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    written.append(path)
    return written
