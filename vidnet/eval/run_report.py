"""``vidnet report RUN_DIR``: training curves (PNG) and a one-page markdown summary of a training run.

Reads what the trainer leaves in a run folder: ``train.csv`` and ``val.csv`` (one row per epoch, written by
`vidnet.train.hooks.CSVSink`), ``config.yaml`` (the resolved configuration) and, when ``vidnet test`` was
run, the ``summary.json`` of its output folder (inside the run, or a ``test*`` folder next to it that
evaluated one of this run's checkpoints).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidnet._io import atomic_path, atomic_write_text
from vidnet.checkpoint import CHECKPOINT_DIR, checkpoint_name
from vidnet.errors import UsageError, VidnetError
from vidnet.eval.metrics import best_index
from vidnet.eval.report import import_pyplot

__all__ = ["EpochLog", "RunLogs", "read_run", "best_epoch", "find_test_summaries", "plot_curves", "write_summary",
           "report_run", "CURVES"]

#: Panels of the curves figure: CSV column and axis title.
CURVES: tuple[tuple[str, str], ...] = (
    ("loss", "loss"), ("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"), ("lr", "learning rate"),
    ("clips_per_s", "clips/s"), ("time", "seconds per epoch"),
)


@dataclass
class EpochLog:
    """The epoch rows of one phase: ``columns[name]`` holds one float per row (NaN where a cell is empty)."""

    epochs: list[int] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epochs)

    def row(self, i: int) -> dict[str, float]:
        """Row ``i`` as ``{column: value}`` (with ``epoch``)."""
        return {"epoch": self.epochs[i], **{k: v[i] for k, v in self.columns.items()}}


@dataclass
class RunLogs:
    """A run folder's logs: ``train`` and ``val`` epochs and the resolved config (empty when absent)."""

    run_dir: Path
    train: EpochLog
    val: EpochLog
    config: dict[str, Any]


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _read_csv(path: Path) -> EpochLog:
    log = EpochLog()
    if not path.is_file():
        return log
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "epoch" not in reader.fieldnames:
            raise VidnetError(f"{path}: not a vidnet epoch log (no 'epoch' column)")
        names = [c for c in reader.fieldnames if c != "epoch"]
        log.columns = {c: [] for c in names}
        for n, row in enumerate(reader, 2):
            try:
                log.epochs.append(int(row["epoch"]))
            except (TypeError, ValueError):
                raise VidnetError(f"{path}, line {n}: epoch {row['epoch']!r} is not a number") from None
            for c in names:
                log.columns[c].append(_float(row.get(c)))
    return log


def read_run(run_dir: str | os.PathLike) -> RunLogs:
    """Read ``train.csv``, ``val.csv`` and ``config.yaml`` of a run folder.

    Raises:
        UsageError: not a folder, or no epoch log in it.
        VidnetError: a malformed CSV or config file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder")
    train, val = _read_csv(run_dir / "train.csv"), _read_csv(run_dir / "val.csv")
    if not len(train) and not len(val):
        raise UsageError(f"{run_dir}: no train.csv or val.csv with epochs (not a vidnet train run folder?)")
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        import yaml

        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise VidnetError(f"{run_dir / 'config.yaml'}: not UTF-8 text (byte {err.start})") from None
        except yaml.YAMLError as err:
            raise VidnetError(f"{run_dir / 'config.yaml'}: not valid YAML ({str(err).splitlines()[0]})") from None
    return RunLogs(run_dir=run_dir, train=train, val=val, config=config)


def best_epoch(log: EpochLog) -> int | None:
    """Index of the best validation row by the trainer's rule (`vidnet.eval.metrics.improves_best`: the first
    maximum of top-1, the epoch ``best.pth`` holds); None without rows."""
    return best_index(log.columns.get("top1", []))


def find_test_summaries(run_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """``vidnet test`` results of this run: ``summary.json`` in a sub-folder of the run (``test-val`` is the
    default), or in a ``test*`` folder next to it whose checkpoint lies inside the run. Sorted by path."""
    run_dir = Path(run_dir).resolve()
    paths = sorted(run_dir.glob("*/summary.json"))
    paths += [p for p in sorted(run_dir.parent.glob("test*/summary.json")) if p.parent != run_dir]
    found = []
    for path in paths:
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(summary, dict) or "checkpoint" not in summary:
            continue
        if path.parent.parent != run_dir:
            ckpt = Path(summary["checkpoint"])
            ckpt = ckpt if ckpt.is_absolute() else Path.cwd() / ckpt
            if run_dir not in ckpt.resolve().parents:
                continue  # the test of another run sharing the parent folder
        found.append((path, summary))
    return found


def plot_curves(logs: RunLogs, path: str | os.PathLike, *, title: str = "") -> Path:
    """One PNG with a panel per `CURVES` entry, train and val against the epoch.

    Raises:
        PlotUnavailable: matplotlib is not installed (``vidnet[plot]``).
    """
    plt = import_pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), dpi=110)
    for ax, (col, name) in zip(axes.flat, CURVES, strict=True):
        for phase, log, style in (("train", logs.train, "-o"), ("val", logs.val, "-s")):
            values = log.columns.get(col)
            if values and not all(math.isnan(v) for v in values):
                ax.plot(log.epochs, values, style, markersize=3, label=phase)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if col == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2%}"


def _num(v: float | None, fmt: str = ".4f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def write_summary(logs: RunLogs, path: str | os.PathLike, *, curves: str | None = None) -> Path:
    """The one-page markdown summary: run, best epoch, final and best numbers, test results, config.

    Args:
        curves: file name of the curves PNG to embed (relative to ``path``), or None when not drawn.
    """
    cfg = logs.config
    network = (cfg.get("model") or {}).get("network") or logs.run_dir.name
    dataset = (cfg.get("data") or {}).get("dataset") or "?"
    lines = [f"# Run report: {network}", "", f"- run folder: `{logs.run_dir}`", f"- dataset: `{dataset}`"]
    # The logs count epochs from 0; a checkpoint is named by the epochs completed (epoch 15 -> ep-0016.pth).
    last_train = logs.train.epochs[-1] if len(logs.train) else None
    lines.append(f"- epochs trained: {last_train + 1 if last_train is not None else 'n/a'} "
                 "(the CSV logs count epochs from 0)")
    best = best_epoch(logs.val)
    if best is not None:
        r = logs.val.row(best)
        ckpt = logs.run_dir / CHECKPOINT_DIR / checkpoint_name(r["epoch"] + 1)
        kept = f", checkpoint `{ckpt.name}`" if ckpt.is_file() else ""
        lines.append(f"- best epoch: {r['epoch']} (val top-1 {_pct(r.get('top1'))}, loss {_num(r.get('loss'))}{kept})")
    else:
        lines.append("- best epoch: n/a (no validation rows)")

    lines += ["", "## Epochs", "", "| | epoch | loss | top-1 | top-5 | lr | clips/s |", "|---|---|---|---|---|---|---|"]
    rows = [("final train", logs.train, len(logs.train) - 1), ("final val", logs.val, len(logs.val) - 1),
            ("best val", logs.val, best)]
    for name, log, i in rows:
        if i is None or i < 0:
            continue
        r = log.row(i)
        lines.append(f"| {name} | {r['epoch']} | {_num(r.get('loss'))} | {_pct(r.get('top1'))} | {_pct(r.get('top5'))} "
                     f"| {_num(r.get('lr'), '.2e')} | {_num(r.get('clips_per_s'), '.1f')} |")

    lines += ["", "## Test results", ""]
    tests = find_test_summaries(logs.run_dir)
    if not tests:
        lines.append("No `vidnet test` output found in or next to the run folder.")
    for found, summary in tests:
        lines += [f"`{found.parent}` (checkpoint `{summary.get('checkpoint')}`, split {summary.get('split', '?')}):",
                  "", "| protocol | videos | top-1 | top-5 | mean class acc | loss |", "|---|---|---|---|---|---|"]
        for key, res in summary.items():
            if isinstance(res, dict) and "top1" in res:
                lines.append(f"| {res.get('protocol', key)} | {res.get('videos')} | {_pct(res.get('top1'))} | "
                             f"{_pct(res.get('top5'))} | {_pct(res.get('mean_class_accuracy'))} | "
                             f"{_num(res.get('loss'))} |")
        lines.append("")

    lines += ["", "## Curves", ""]
    lines.append(f"![training curves]({curves})" if curves else
                 "Not drawn: matplotlib is not installed (`pip install 'vidnet[plot]'`).")
    if cfg:
        import yaml

        lines += ["", "## Resolved config", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```"]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def report_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """Write ``curves.png`` and ``report.md`` for a run (into ``out``, default the run folder).

    The markdown is written even when matplotlib is missing; the error is raised after it.

    Returns:
        ``(report.md, curves.png)``.

    Raises:
        PlotUnavailable: matplotlib is not installed (``report.md`` is written all the same).
        UsageError, VidnetError: see `read_run`.
    """
    from vidnet.eval.report import PlotUnavailable

    logs = read_run(run_dir)
    out = Path(out) if out is not None else logs.run_dir
    out.mkdir(parents=True, exist_ok=True)
    network = (logs.config.get("model") or {}).get("network") or logs.run_dir.name
    try:
        curves = plot_curves(logs, out / "curves.png", title=f"{network}: {logs.run_dir}")
    except PlotUnavailable:
        write_summary(logs, out / "report.md", curves=None)
        raise
    rel = os.path.relpath(curves, out)
    return write_summary(logs, out / "report.md", curves=rel), curves
