"""``vidnet benchmark-io``: clip loading speed of the store against JPEG folders, video, HDF5 and pure decode."""

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


@app.command("benchmark-io")
def benchmark_io(
    dataset: Annotated[Path, typer.Argument(help="A converted dataset (index.csv, labels.json, frames.db stores).")],
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", help="BATCHxFRAMESxSIZE, repeatable (default: 1536x4x80 384x8x112 96x16x158 48x16x224).")] = None,
    workers: Annotated[str, typer.Option(help="DataLoader worker counts, comma-separated (0 = main process).")] = "1",
    formats: Annotated[str, typer.Option(help="Formats to compare: sqlite,jpg,video,hdf5,decode.")] =
    "sqlite,jpg,video,hdf5,decode",
    batches: Annotated[int | None, typer.Option(help="Timed batches per cell (default: from --max-clips).")] = None,
    max_clips: Annotated[int, typer.Option(help="Clips timed per cell when --batches is not given.")] = 512,
    repeat: Annotated[int, typer.Option(help="Timed rounds per cell (formats interleaved); the best counts.")] = 3,
    scratch: Annotated[Path | None, typer.Option(
        help="Folder for the jpg/hdf5/video copies, kept and reused (default: a temporary folder, removed).")] = None,
    videos: Annotated[Path | None, typer.Option(
        help="Decode the dataset's source videos (index.csv 'source' column) from this folder for 'video', "
             "instead of re-encoding the stored frames to H.264.")] = None,
    split: Annotated[str | None, typer.Option(help="Only videos of this split (default: all).")] = None,
    rss_clips: Annotated[int, typer.Option(help="Clips for the worker memory measurement (0 skips).")] = 2000,
    scaling: Annotated[bool, typer.Option(help="Measure sqlite with 2 workers against 1.")] = True,
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
    (the JPEG bytes already in memory) is the physical limit and the reference of every ratio. The
    comparison formats are written to --scratch first. See docs/data.md.
    """
    from vidnet.data.benchmark import DEFAULT_SHAPES, BenchmarkOptions, parse_shape, run_benchmark
    from vidnet.data.sampling import parse_interval

    setup_logging(-1)
    shapes = [parse_shape(s) for s in shape] if shape else list(DEFAULT_SHAPES)
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
        rss_clips=rss_clips,
        scaling=scaling,
        scaling_shape=(96, 16, 112) if not shape else shapes[0],
    )

    def stage(text: str) -> None:
        if not quiet:
            err_console.print(f"[dim]{text}[/dim]")

    report = run_benchmark(dataset, opts, on_stage=stage)
    out = Console()
    if not out.is_terminal:
        out = Console(width=140)  # whole rows in files and pipes
    table = Table(title=f"benchmark-io {dataset}: {report.videos} videos, {report.frames_per_video:.0f} frames "
                        f"of {report.stored_size[0]}x{report.stored_size[1]} per video, frame interval "
                        f"{report.frame_interval}, {report.max_open} open per worker")
    for col in ("format", "batch x T x S", "workers", "clips/s", "frames/s", "MB/s", "KB/video", "vs decode"):
        table.add_column(col, justify="left" if col == "format" else "right")
    for c in report.cells:
        colour = _colour(c.ratio_to_decode, 0.95, 0.5)
        ratio = f"[{colour}]{c.ratio_to_decode:.2f}x[/{colour}]" if c.ratio_to_decode is not None else "-"
        table.add_row(c.format, f"{c.batch}x{c.frames}x{c.size}", str(c.workers), f"[{colour}]{c.clips_per_s:,.0f}"
                      f"[/{colour}]", f"{c.frames_per_s:,.0f}", f"{c.mb_per_s:,.1f}", f"{c.bytes_per_video / 1e3:,.0f}",
                      ratio)
    out.print(table)
    out.print(f"video: {report.video_source}")
    if report.reduced_decode:
        r = report.reduced_decode
        parts = [f"1/{d}: full {r[f'1/{d}_full_us']:.0f} us, reduced {r[f'1/{d}_reduced_us']:.0f} us per frame "
                 f"({r[f'1/{d}_speedup']:.2f}x)" for d in (2, 4) if f"1/{d}_speedup" in r]
        out.print("reduced-scale decode + resize vs full decode + resize, same output: " + "; ".join(parts))
    if report.scaling:
        s = report.scaling
        out.print(f"scaling ({s['shape']}, {s['cpus']} CPUs): 1 worker {s['1_worker_clips_per_s']:,.0f} clips/s, "
                  f"2 workers {s['2_workers_clips_per_s']:,.0f} clips/s ({s['speedup']:.2f}x)")
    if report.rss:
        r = report.rss
        out.print(f"worker RSS (private) over {r['clips']} clips: {r['private_after_first_batch_mb']:.0f} MB after the "
                  f"first batch, {r['private_end_mb']:.0f} MB at the end (growth {r['growth_mb']:+.1f} MB, "
                  f"peak {r['peak_growth_mb']:+.1f})")
    targets = Table(title="targets (issue 3)")
    for col in ("target", "cell", "measured", "need", ""):
        targets.add_column(col, justify="left" if col in ("target", "cell") else "right")
    for t in report.targets:
        lower_is_better = "RSS" in t["target"]
        colour = "green" if t["met"] else "red"
        verdict = "[green]met" if t["met"] else "[red]not met"
        targets.add_row(t["target"], t["cell"], f"[{colour}]{shown_value(t['value'], t['need'])}[/{colour}]",
                        f"{'<' if lower_is_better else '>='} {t['need']:g}", verdict)
    out.print(targets)
    if json_file is not None:
        atomic_write_text(json_file, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        out.print(f"wrote {json_file}")
