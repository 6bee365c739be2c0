"""Metric sinks: the loop hands them numbers, each sink formats them its own way.

A step record holds ``epoch, iteration, steps, loss, top1, top5, lr, batch, frames, height, width`` and the
speeds ``read, forward, backward`` in clips per second (the original's SpeedMonitor: ``r`` = clips over the
time spent waiting for the batch, ``f`` = host-to-device copy + forward + loss, ``b`` = backward). An epoch
record holds ``epoch, loss, top1, top5, lr, clips_per_s, time`` (accuracies as fractions). Colours exist
only in `ConsoleSink`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from vidnet._log import get_logger
from vidnet.errors import UsageError

__all__ = ["Sink", "ConsoleSink", "CSVSink", "TensorBoardSink", "Sinks", "speed_colour", "SPEED_THRESHOLDS",
           "confusion_image"]

log = get_logger(__name__)

#: Clips/s below the first value are red, below the second yellow, else green (the original's limits).
SPEED_THRESHOLDS: dict[str, tuple[float, float]] = {"read": (100, 3000), "forward": (50, 300), "backward": (20, 200)}
_ANSI = {"red": "\033[91m", "yellow": "\033[93m", "green": "\033[92m"}


class Sink(Protocol):
    """Receives metric dicts; ``phase`` is ``train`` or ``val``."""

    def step(self, record: dict[str, Any]) -> None: ...

    def epoch(self, phase: str, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def speed_colour(kind: str, clips_per_s: float) -> str:
    """``red``, ``yellow`` or ``green`` for a speed of ``kind`` (read, forward or backward)."""
    low, high = SPEED_THRESHOLDS[kind]
    return "red" if clips_per_s < low else "yellow" if clips_per_s < high else "green"


def data_bound(record: dict[str, Any]) -> bool:
    """True when waiting for data took longer than forward and backward together (the GPU starves)."""
    r, f, b = (record.get(k, math.inf) for k in ("read", "forward", "backward"))
    if not all(v > 0 for v in (r, f, b)):
        return False
    return 1 / r > 1 / f + 1 / b


class ConsoleSink:
    """Log lines every ``interval`` steps with coloured speeds; an epoch summary per phase."""

    def __init__(self, *, interval: int = 10, colour: bool | None = None, progress: bool | None = None) -> None:
        self.interval = max(1, interval)
        self.colour = sys.stderr.isatty() and "NO_COLOR" not in os.environ if colour is None else colour
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._bar: Any = None
        self._task: Any = None
        self._epoch: int | None = None

    def _advance(self, r: dict[str, Any]) -> None:
        """A progress bar per training epoch (terminals only), showing loss and the batch shape."""
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
        if self._epoch != r["epoch"]:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._epoch = r["epoch"]
            self._task = self._bar.add_task(f"epoch {r['epoch']}", total=r.get("iterations"), info="")
        self._bar.update(self._task, completed=r["iteration"] + 1,
                         info=f"loss {r['loss']:.3f} {r['batch']}x{r['frames']}x{r['height']}x{r['width']}")

    def _speed(self, kind: str, value: float) -> str:
        text = f"{value:.2e}"
        return f"{_ANSI[speed_colour(kind, value)]}{text}\033[0m" if self.colour else text

    def format_step(self, r: dict[str, Any]) -> str:
        """One step line: epoch, iteration, speeds, loss, accuracy, batch shape and learning rate."""
        speeds = " ".join(f"{k[0]}={self._speed(k, r[k])}" for k in ("read", "forward", "backward") if k in r)
        speeds = f"Speed ({speeds}) clip/s " if speeds else ""
        line = (f"Epoch [{r['epoch']}] Batch [{r['iteration']}/{r.get('iterations', '?')}] {speeds}"
                f"loss={r['loss']:.4f} top1={r['top1']:.3f} top5={r['top5']:.3f} "
                f"batch=({r['batch']},3,{r['frames']},{r['height']},{r['width']}) lr={r['lr']:.2e}")
        if data_bound(r):
            line += " | data loading is the bottleneck (more --workers or a faster disk)"
        return line

    def step(self, record: dict[str, Any]) -> None:
        if self.progress:
            self._advance(record)
        if record["iteration"] % self.interval == 0 or record.get("last", False):
            log.info(self.format_step(record))

    def epoch(self, phase: str, record: dict[str, Any]) -> None:
        log.info(f"{phase} epoch {record['epoch']}: loss={record['loss']:.4f} top1={record['top1']:.4f} "
                 f"top5={record['top5']:.4f} lr={record.get('lr', 0):.2e} {record.get('clips_per_s', 0):.1f} clips/s "
                 f"{record.get('time', 0):.1f} s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class CSVSink:
    """``train.csv`` and ``val.csv``: one row per epoch (epoch, loss, top1, top5, lr, clips_per_s, time).

    Rows are appended, so a resumed run continues the same files; rows for epochs at or after the resume
    point are dropped first so a resumed file never holds an epoch twice.
    """

    columns = ("epoch", "loss", "top1", "top5", "lr", "clips_per_s", "time")

    def __init__(self, folder: str | os.PathLike, *, start_epoch: int = 0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for phase in ("train", "val"):
            self._truncate(self.folder / f"{phase}.csv", start_epoch)

    def _truncate(self, path: Path, start_epoch: int) -> None:
        if not path.is_file():
            return
        with path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < start_epoch]
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, self.columns)
            w.writeheader()
            w.writerows(rows)

    def step(self, record: dict[str, Any]) -> None:
        pass

    def epoch(self, phase: str, record: dict[str, Any]) -> None:
        path = self.folder / f"{phase}.csv"
        new = not path.is_file()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: record.get(k, "") for k in self.columns})

    def close(self) -> None:
        pass


class TensorBoardSink:
    """TensorBoard events (``pip install 'vidnet[tb]'``), what one looks for in a run:

    * per step: ``train/loss``, ``train/top1``, ``train/top5``, ``train/lr``; the mini-batch shape
      ``shape/batch``, ``shape/frames``, ``shape/crop`` (multigrid changes it); on timed steps the speeds
      ``speed/read``, ``speed/forward``, ``speed/backward`` (clips/s) and ``time/data_s`` against ``time/step_s``
      (waiting for the batch against the forward and backward);
    * per epoch: ``<phase>_epoch/loss``, ``top1``, ``top5``, ``clips_per_s``, ``lr``, and after validation the
      confusion matrix as an image (``val/confusion``, rows = true class, each row scaled to its maximum).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.folder = Path(folder)
        self.writer = SummaryWriter(str(folder))

    @classmethod
    def create(cls, folder: str | os.PathLike, asked: bool | None) -> TensorBoardSink | None:
        """A sink when asked (``True``) or by default (``None``) with tensorboard installed, else None.

        Raises:
            UsageError: ``--tensorboard`` was asked for and the tensorboard package is missing.
        """
        if asked is False:
            return None
        try:
            return cls(folder)
        except ImportError:
            hint = "the tensorboard package is not installed: pip install 'vidnet[tb]'"
            if asked:
                raise UsageError(f"--tensorboard: {hint}") from None
            log.info(f"no TensorBoard events ({hint}); metrics go to train.csv and val.csv")
            return None

    def step(self, record: dict[str, Any]) -> None:
        s, add = record["steps"], self.writer.add_scalar
        for k in ("loss", "top1", "top5", "lr"):
            if k in record:
                add(f"train/{k}", record[k], s)
        for k in ("read", "forward", "backward"):
            if k in record:
                add(f"speed/{k}", record[k], s)
        for k in ("data_s", "step_s"):
            if k in record:
                add(f"time/{k}", record[k], s)
        for key, name in (("batch", "batch"), ("frames", "frames"), ("height", "crop")):
            if key in record:
                add(f"shape/{name}", record[key], s)

    def epoch(self, phase: str, record: dict[str, Any]) -> None:
        for k in ("loss", "top1", "top5", "clips_per_s", "lr"):
            if k in record:
                self.writer.add_scalar(f"{phase}_epoch/{k}", record[k], record["epoch"])
        if record.get("confusion") is not None:
            self.writer.add_image(f"{phase}/confusion", confusion_image(record["confusion"]), record["epoch"],
                                  dataformats="HW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def confusion_image(cm: Any, *, min_size: int = 256) -> Any:
    """A confusion matrix as a grey image ``[H, W]`` in [0, 1]: rows are true classes, each scaled to its
    maximum (so every class's errors show), cells enlarged to at least ``min_size`` pixels in all."""
    import numpy as np

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm / np.maximum(cm.max(axis=1, keepdims=True), 1)
    scale = max(1, -(-min_size // max(len(cm), 1)))
    return np.kron(rows, np.ones((scale, scale))).astype(np.float32)


class Sinks:
    """Fans records out to several sinks."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def step(self, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.step(record)

    def epoch(self, phase: str, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.epoch(phase, record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
