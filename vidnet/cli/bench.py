"""``vidnet benchmark-io``: clip loading speed of the store against JPEG folders, HDF5, video and pure decode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vidnet._io import atomic_write_text
from vidnet._log import setup_logging
from vidnet.cli._app import app
from vidnet.cli._progress import console as err_console
from vidnet.errors import UsageError


def shown_value(value: float, need: float) -> str:
    """``value`` with two decimals, or more where two would round it onto the other side of ``need``
    (0.996 against >= 1.0 prints as 0.996, not as a failing 1.00)."""
    for digits in range(2, 7):
        text = f"{value:.{digits}f}"
        if (float(text) >= need) == (value >= need):
            break
    return text


def _colour(ratio: float | None, green: float, yellow: float) -> str:
    if ratio is None:
        return "white"
    return "green" if ratio >= green else "yellow" if ratio >= yellow else "red"


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def _ratio_text(r, colour: str) -> str:
    return f"[{colour}]{r.median:.2f}x[/{colour}] ({r.low:.2f}-{r.high:.2f})"


_VERDICT_COLOUR = {"met": "green", "not met": "red", "within noise": "yellow"}


@app.command("benchmark-io")
def benchmark_io(
    dataset: Annotated[Path, typer.Argument(help="A converted dataset (index.csv, labels.json, frames.db stores).")],
    full: Annotated[bool, typer.Option(
        "--full", help="The four original shapes (1536x4x80 384x8x112 96x16x158 48x16x224), 2 workers against 1, "
                       "reduced-scale decode and worker memory (default: the 96x16x158 headline cell only).")] = False,
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", help="BATCHxFRAMESxSIZE, repeatable (default: 96x16x158; with --full the four shapes).")] = None,
    workers: Annotated[str, typer.Option(help="DataLoader worker counts, comma-separated (0 = main process).")] = "1",
    formats: Annotated[str, typer.Option(help="Formats to compare: sqlite,jpg,hdf5,hdf5-jpeg,video,decode.")] =
    "sqlite,jpg,hdf5,hdf5-jpeg,video,decode",
    batches: Annotated[int | None, typer.Option(
        help="Timed batches per cell and round (default: from --max-clips).")] = None,
    max_clips: Annotated[int, typer.Option(help="Clips timed per cell and round when --batches is not given.")] = 192,
    repeat: Annotated[int, typer.Option(
        help="Timed rounds per cell (formats interleaved); the median is shown with the lowest and highest.")] = 5,
    scratch: Annotated[Path | None, typer.Option(
        help="Folder for the jpg/hdf5/video copies, kept and reused (default: a temporary folder, removed).")] = None,
    videos: Annotated[Path | None, typer.Option(
        help="Folder of the dataset's source videos (index.csv 'source' column) for 'video' (default: DATASET; "
             "when they are not found, the stored frames are re-encoded to H.264).")] = None,
    split: Annotated[str | None, typer.Option(help="Only videos of this split (default: all).")] = None,
    rss_clips: Annotated[int | None, typer.Option(
        help="Clips for the worker memory measurement (default: 2000 with --full, else 0: skipped).")] = None,
    scaling: Annotated[bool | None, typer.Option(
        help="Measure sqlite with 2 workers against 1 (default: with --full).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (the same for every format).")] = 0,
    max_open: Annotated[int | None, typer.Option(
        help="Stores (and HDF5 files) kept open per worker, as the dataset's max_open (default: every video, "
             "within the open-file limit).")] = None,
    frame_interval: Annotated[str, typer.Option(
        help="Frame step of the sampled clips: 2, 1,2 or 2-4 (default 2: the original's UCF-101/HMDB-51 "
             "training interval; only 'video' depends on it).")] = "2",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Measure end-to-end clips/s through a DataLoader for the store and the formats it replaces.

    Every format reads the same videos and frames with the same sampler, resize and batching; `decode`
    (the JPEG bytes already in memory) is the physical limit and the reference of every ratio. Each cell runs
    --repeat interleaved rounds: the tables show the median with the lowest and highest round, and a target
    is met, not met, or within noise. The comparison formats are written to --scratch first. See docs/data.md.
    """
    from vidnet.data.benchmark import FULL_SHAPES, QUICK_SHAPES, BenchmarkOptions, parse_shape, run_benchmark
    from vidnet.data.sampling import parse_interval

    setup_logging(-1)
    shapes = [parse_shape(s) for s in shape] if shape else list(FULL_SHAPES if full else QUICK_SHAPES)
    opts = BenchmarkOptions(
        shapes=shapes,
        workers=_ints(workers, "--workers"),
        formats=[f.strip() for f in formats.split(",") if f.strip()],
        batches=batches,
        max_clips=max_clips,
        repeat=repeat,
        scratch=scratch,
        videos=videos,
        split=split,
        seed=seed,
        max_open=max_open,
        frame_interval=parse_interval(frame_interval),
        rss_clips=rss_clips if rss_clips is not None else (2000 if full else 0),
        scaling=scaling if scaling is not None else full,
        reduced=full,
        scaling_shape=(96, 16, 112) if not shape else shapes[0],
    )

    def stage(text: str) -> None:
        if not quiet:
            err_console.print(f"[dim]{text}[/dim]")

    report = run_benchmark(dataset, opts, on_stage=stage)
    out = Console()
    if not out.is_terminal:
        out = Console(width=150)  # whole rows in files and pipes
    out.print(f"benchmark-io {dataset}: {report.videos} videos, {report.frames_per_video:.0f} frames of "
              f"{report.stored_size[0]}x{report.stored_size[1]} per video, frame interval {report.frame_interval}, "
              f"{report.max_open} open per worker; each figure the median of {report.rounds} interleaved rounds, "
              f"with the lowest and highest round", soft_wrap=True)
    table = Table()
    for col in ("format", "batch x T x S", "workers", "clips/s", "rounds", "frames/s", "MB/s", "KB/frame",
                "vs decode (rounds)"):
        table.add_column(col, justify="left" if col == "format" else "right")
    for c in report.cells:
        r = c.ratio
        colour = _colour(r.median if r else None, 0.95, 0.5)
        table.add_row(c.format, f"{c.batch}x{c.frames}x{c.size}", str(c.workers),
                      f"[{colour}]{c.clips_per_s:,.0f}[/{colour}]",
                      f"{c.clips_per_s_low:,.0f}-{c.clips_per_s_high:,.0f}",
                      f"{c.frames_per_s:,.0f}", f"{c.mb_per_s:,.1f}", f"{c.bytes_per_frame / 1e3:,.1f}",
                      _ratio_text(r, colour) if r else "-")
    out.print(table)
    out.print(f"video: {report.video_source}", soft_wrap=True)
    if report.reduced_decode:
        r = report.reduced_decode
        parts = [f"1/{d}: full {r[f'1/{d}_full_us']:.0f} us, reduced {r[f'1/{d}_reduced_us']:.0f} us per frame "
                 f"({r[f'1/{d}_speedup']:.2f}x, {r[f'1/{d}_speedup_low']:.2f}-{r[f'1/{d}_speedup_high']:.2f})"
                 for d in (2, 4) if f"1/{d}_speedup" in r]
        out.print("reduced-scale decode + resize vs full decode + resize, same output: " + "; ".join(parts))
    if report.scaling:
        s = report.scaling
        out.print(f"scaling ({s['shape']}, {s['cpus']} CPUs): 1 worker {s['1_worker_clips_per_s']:,.0f} clips/s, "
                  f"2 workers {s['2_workers_clips_per_s']:,.0f} clips/s ({s['speedup']:.2f}x, "
                  f"{s['speedup_low']:.2f}-{s['speedup_high']:.2f})")
    if report.rss:
        r = report.rss
        out.print(f"worker RSS (private) over {r['clips']} clips: {r['private_after_first_batch_mb']:.0f} MB after the "
                  f"first batch, {r['private_end_mb']:.0f} MB at the end (growth {r['growth_mb']:+.1f} MB, "
                  f"peak {r['peak_growth_mb']:+.1f})")
    targets = Table(title="targets: met when every round meets the need, not met when none does")
    for col in ("target", "cell", "median", "rounds", "need", ""):
        targets.add_column(col, justify="left" if col in ("target", "cell") else "right")
    for t in report.targets:
        colour = _VERDICT_COLOUR[t["verdict"]]
        need = t["need"]
        targets.add_row(t["target"], t["cell"], f"[{colour}]{shown_value(t['value'], need)}[/{colour}]",
                        f"{shown_value(t['low'], need)}-{shown_value(t['high'], need)}" if t["low"] != t["high"]
                        else "", f"{'<=' if t['lower_is_better'] else '>='} {need:g}",
                        f"[{colour}]{t['verdict']}[/{colour}]")
    out.print(targets)
    load = ", ".join(f"{v:.2f}" for v in report.load)
    out.print(f"{report.seconds:.0f} s on {report.cpus} CPUs, load average {load} at the end (1, 5, 15 min)",
              soft_wrap=True)
    if json_file is not None:
        atomic_write_text(json_file, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        out.print(f"wrote {json_file}")
