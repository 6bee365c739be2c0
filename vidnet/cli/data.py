"""Data commands: ``sample``, ``convert``, ``info``, ``quickstart`` and ``version``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vidnet import __version__
from vidnet._log import setup_logging
from vidnet.cli._app import app
from vidnet.cli._progress import console, make_progress, results
from vidnet.data.splits import DEFAULT_VAL_FRACTION
from vidnet.errors import UsageError, VidnetError

Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v, -vv).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


@app.command()
def version() -> None:
    """Print vidnet's version and the versions of its main dependencies."""
    import numpy
    import torch

    typer.echo(f"vidnet {__version__} (torch {torch.__version__}, numpy {numpy.__version__})")


@app.command()
def sample(
    dst: Annotated[Path, typer.Argument(help="Folder to write the videos, index.csv, labels.json and "
                                             "dataset.json into.")],
    classes: Annotated[int, typer.Option(help="Number of motion classes (2-8).")] = 8,
    videos_per_class: Annotated[int, typer.Option(help="Videos in each class.")] = 40,
    min_frames: Annotated[int, typer.Option(help="Shortest video in frames.")] = 32,
    max_frames: Annotated[int, typer.Option(help="Longest video in frames.")] = 64,
    width: Annotated[int, typer.Option(help="Frame width (even).")] = 128,
    height: Annotated[int, typer.Option(help="Frame height (even).")] = 96,
    val_fraction: Annotated[float, typer.Option(help="Share of each class in split 'val'.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same dataset).")] = 0,
    workers: Annotated[int, typer.Option(help="Processes (0 = all cores).")] = 0,
    quiet: Quiet = False,
) -> None:
    """Generate the embedded sample dataset: classes that differ only in motion, as real video files."""
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    setup_logging(-1 if quiet else 0)
    opts = SampleOptions(classes, videos_per_class, min_frames, max_frames, width, height, 25, val_fraction,
                         seed, workers)
    t0 = time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task("sample", total=classes * videos_per_class, info="")
        rows = make_sample_dataset(dst, opts, on_progress=lambda _row: progress.advance(task))
    n_val = sum(r.split == "val" for r in rows)
    console.print(f"wrote {len(rows)} videos ({len(rows) - n_val} train, {n_val} val) in {classes} classes "
                  f"to {dst} in {time.perf_counter() - t0:.1f} s")


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Input dataset: SRC/<label>/<video> (videos, frame folders, "
                                             "HDF5 files or frames.db stores).")],
    dst: Annotated[Path | None, typer.Argument(help="Output root: DST/<label>/<video_id>/frames.db, "
                                                    "index.csv, labels.json.")] = None,
    layout: Annotated[str, typer.Option(help="auto, videos, frames, hdf5 or db.")] = "auto",
    short_side: Annotated[int | None, typer.Option(help="Resize so the shorter side is N pixels, keeping the "
                                                        "aspect ratio (default: keep the size).")] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality of (re-)encoded frames.")] = 90,
    fps: Annotated[float | None, typer.Option(help="Resample videos to this frame rate.")] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes (0 = all cores).")] = 0,
    index: Annotated[Path | None, typer.Option(help="Index naming the videos (source column), labels and "
                                                    "splits; default SRC/index.csv when it exists.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Without an index: share of each class put in split "
                                                     "'val' (stratified per class, deterministic; 0 = none).")
                            ] = DEFAULT_VAL_FRACTION,
    overwrite: Annotated[bool, typer.Option(help="Redo stores that are already complete.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any input fails.")] = False,
    limit: Annotated[int | None, typer.Option(help="Convert at most N videos (for a trial run).")] = None,
    in_place: Annotated[bool, typer.Option(help="dataset2database trees: validate the stores where they are "
                                                "and add n_frames and the index files to SRC.")] = False,
    checksum: Annotated[bool, typer.Option(help="Record each source file's sha256 in its store.")] = True,
    allow_outside_source: Annotated[bool, typer.Option(help="Read sources the index names outside SRC "
                                                            "(absolute paths, '..').")] = False,
    wait: Annotated[bool, typer.Option(help="If another run is writing into DST, wait for it instead of "
                                            "exiting.")] = False,
    reindex: Annotated[bool, typer.Option(help="`vidnet convert DST --reindex`: rebuild DST's index.csv and "
                                               "labels.json from its stores (label ids kept).")] = False,
    shard: Annotated[str | None, typer.Option(help="K/N: convert only shard K of N (a stable hash of each "
                                                   "video's key) and write DST/*.shard-K-of-N.* part files, "
                                                   "not the index; for SLURM job arrays (docs/cluster.md).")] = None,
    merge: Annotated[bool, typer.Option(help="`vidnet convert DST --merge`: build DST's index.csv, labels.json "
                                             "and convert-errors.csv from the parts of every shard.")] = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Convert a video dataset into one frames.db store per video plus index.csv and labels.json.

    Resumable: an interrupted run leaves no half-written store, and a re-run skips finished videos.
    Bad inputs are listed in DST/convert-errors.csv; the exit code is 0 unless nothing converted or --strict.
    Whatever happens, DST/index.csv lists the complete stores in DST, and label ids never change.
    One run at a time writes into a DST: a second exits with code 2 (or waits, with --wait); the shards of one
    conversion (--shard K/N) run together, then `vidnet convert DST --merge` writes the index.
    """
    from vidnet.data.ingest import ConvertOptions, convert_dataset, merge_shards, reindex_dataset
    from vidnet.data.shards import parse_shard

    setup_logging(-1 if quiet else verbose)
    if merge:
        if dst is not None or reindex or shard:
            raise UsageError("--merge takes one folder and no --shard/--reindex: vidnet convert DST --merge")
        s = merge_shards(src, wait=wait)
        console.print(
            f"merged {s.shards} shards: {s.converted} converted, {s.skipped} already done, "
            f"[red]{s.failed} failed[/red], {s.warnings} warnings; {s.frames:,} frames in {s.seconds:.1f} "
            f"process-seconds\n{len(s.rows)} stores; index: {src}/index.csv  labels: {src}/labels.json"
            + (f"  problems: {src}/convert-errors.csv" if s.problems else ""))
        return
    if reindex:
        if dst is not None:
            raise UsageError("--reindex takes one folder: vidnet convert DST --reindex")
        update = reindex_dataset(src, wait=wait)
        changed = " and ".join(update.written) or "nothing (already up to date)"
        console.print(f"{len(update.rows)} stores in {len(update.labels)} labels; rewrote {changed}"
                      + (f"; new labels: {', '.join(update.added_labels)}" if update.added_labels else ""))
        return
    opts = ConvertOptions(layout=layout, short_side=short_side, quality=quality, fps=fps, workers=workers,
                          overwrite=overwrite, strict=strict, limit=limit, index=index, val_fraction=val_fraction,
                          in_place=in_place, checksum=checksum, allow_outside_source=allow_outside_source,
                          wait=wait, shard=parse_shard(shard) if shard else None)
    progress = make_progress()
    task = None
    t0 = time.perf_counter()

    def on_start(n: int) -> None:  # the bar appears once the inputs are listed and checked
        nonlocal task
        progress.start()
        task = progress.add_task("convert", total=n, info="")

    def on_progress(_res, s) -> None:
        rate = s.frames / max(1e-9, time.perf_counter() - t0)
        info = f"{rate:,.0f} frames/s"
        if s.failed:
            info += f" [red]{s.failed} failed[/red]"
        progress.update(task, advance=1, info=info)

    try:
        summary = convert_dataset(src, dst, opts, on_progress=on_progress, on_start=on_start)
    finally:
        progress.stop()
    out = src if in_place else dst
    if summary.interrupted:
        done = summary.converted + summary.skipped
        console.print(f"[yellow]interrupted[/yellow] after {done} of {summary.total} videos; "
                      "run the same command again to finish (finished stores are kept)")
        raise typer.Exit(130)
    rate = summary.frames / max(summary.seconds, 1e-9)
    if opts.shard is not None:
        part = f"{out}/index.shard-{opts.shard.k}-of-{opts.shard.n}.csv"
        console.print(
            f"shard {opts.shard}: {summary.converted} converted, {summary.skipped} already done, "
            f"[red]{summary.failed} failed[/red], {summary.warnings} warnings; {summary.frames:,} frames in "
            f"{summary.seconds:.1f} s ({rate:,.0f} frames/s)\npart index: {part}; once every shard is done: "
            f"vidnet convert {out} --merge")
        if summary.total and summary.converted + summary.skipped == 0:
            raise VidnetError(f"{src}: shard {opts.shard}: nothing converted ({summary.failed} failed; see "
                              f"{out}/convert-errors.shard-{opts.shard.k}-of-{opts.shard.n}.csv)")
        if strict and summary.failed:
            raise VidnetError(f"{summary.failed} input(s) failed and --strict was given")
        return
    console.print(
        f"{summary.converted} converted, {summary.skipped} already done, [red]{summary.failed} failed[/red], "
        f"{summary.warnings} warnings; {summary.frames:,} frames in {summary.seconds:.1f} s ({rate:,.0f} frames/s)"
        f"\n{_split_summary(out / 'index.csv')}"
        f"\nindex: {out}/index.csv  labels: {out}/labels.json"
        + (f"  problems: {out}/convert-errors.csv" if summary.problems else "")
    )
    if summary.converted + summary.skipped == 0:
        raise VidnetError(f"{src}: nothing converted ({summary.failed} failed; see {out}/convert-errors.csv)")
    if strict and summary.failed:
        raise VidnetError(f"{summary.failed} input(s) failed and --strict was given (see {out}/convert-errors.csv)")


def _split_summary(index: Path) -> str:
    """``splits: train 80, val 20 (per class ...)`` of a written index, or what to do when it has none."""
    from collections import Counter

    from vidnet.data.index import read_index

    try:
        counts = Counter(r.split or "(none)" for r in read_index(index))
    except (OSError, VidnetError):
        return ""
    text = "splits: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if set(counts) == {"(none)"}:
        text += " (no split: `vidnet train` needs one; run again with --val-fraction 0.2)"
    return text


def _print_store(rep) -> None:
    table = Table(title=rep.path, show_header=False)
    for key in ("n_frames", "width", "height", "fps", "bytes", "writer", "vidnet_format", "source_name",
                "source_size", "source_checksum", "jpeg_quality", "n_frames_file"):
        table.add_row(key, str(getattr(rep, key)))
    for note in rep.notes:
        table.add_row("note", note)
    table.add_row("valid", "[green]yes: every frame decodes[/green]" if rep.ok else
                  "[red]no[/red]: " + "; ".join(rep.problems[:5]))
    results.print(table)


def _print_dataset(rep) -> None:
    table = Table(title=f"dataset {rep.root}", show_header=False)
    table.add_row("videos", f"{rep.videos:,}")
    table.add_row("classes", str(rep.classes))
    table.add_row("frames", f"{rep.frames:,}")
    table.add_row("bytes on disk", f"{rep.bytes:,} ({rep.bytes / 2**20:.1f} MiB)")
    table.add_row("frame sizes", ", ".join(f"{k} ({v})" for k, v in rep.frame_sizes.items()))
    if rep.shortest:
        table.add_row("shortest", f"{rep.shortest[0]} ({rep.shortest[1]} frames)")
        table.add_row("longest", f"{rep.longest[0]} ({rep.longest[1]} frames)")
    table.add_row("splits", ", ".join(f"{k}: {v}" for k, v in rep.per_split.items()))
    table.add_row("conversion failures", f"{rep.failures} ({rep.warnings} warnings)")
    if rep.missing_stores:
        table.add_row("[red]missing stores[/red]", f"{len(rep.missing_stores)}: {', '.join(rep.missing_stores[:5])}")
    if rep.bad_stores:
        first = "; ".join(f"{k}: {v[0]}" for k, v in list(rep.bad_stores.items())[:3])
        table.add_row("[red]bad stores[/red]", f"{len(rep.bad_stores)}: {first}")
    if rep.unknown_labels:
        table.add_row("[red]labels without an id[/red]",
                      f"{len(rep.unknown_labels)}: {', '.join(rep.unknown_labels[:5])} (not in labels.json)")
    for note in rep.notes:
        table.add_row("[yellow]warning[/yellow]", note)
    results.print(table)
    per_class = Table(title="videos per class")
    per_class.add_column("class")
    per_class.add_column("videos", justify="right")
    for label, n in rep.per_class.items():
        per_class.add_row(label, str(n))
    results.print(per_class)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A converted dataset (with index.csv), or one frames.db.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    verify: Annotated[bool, typer.Option(help="Decode every frame of every store (always on for one store).")
                      ] = False,
) -> None:
    """Describe a converted dataset or a single frames.db store, and check that it is sound."""
    from dataclasses import asdict

    from vidnet.data.inspect import inspect_dataset, inspect_store
    from vidnet.data.store import STORE_NAME

    setup_logging(0)
    single = path.suffix == ".db" or (path.is_dir() and (path / STORE_NAME).is_file()
                                      and not (path / "index.csv").is_file())
    if single:
        rep = inspect_store(path, verify=True)
        if as_json:
            typer.echo(json.dumps({**asdict(rep), "ok": rep.ok}, indent=2))
        else:
            _print_store(rep)
        if not rep.ok:
            raise typer.Exit(1)
        return
    rep = inspect_dataset(path, verify=verify)
    if as_json:
        typer.echo(json.dumps({**rep.to_dict(), "ok": rep.ok}, indent=2))
    else:
        _print_dataset(rep)
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def quickstart(
    workdir: Annotated[Path, typer.Option("--dir", help="Working folder.")] = Path("vidnet-quickstart"),
    workers: Annotated[int, typer.Option(help="Processes (0 = all cores).")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs of each model (0 skips training).")] = 16,
) -> None:
    """The main job on the embedded sample dataset: generate, convert, describe, read clips, train, evaluate."""
    import numpy as np

    from vidnet.data.index import read_index
    from vidnet.data.store import FrameStore

    setup_logging(0)
    videos, frames = workdir / "videos", workdir / "frames"
    t0 = time.perf_counter()
    console.rule("1. sample dataset")
    if (videos / "index.csv").is_file():
        console.print(f"reusing {videos} (delete it to generate again)")
    else:
        sample(videos, workers=workers, quiet=True)
    console.rule("2. convert to frames.db stores")
    convert(videos, frames, workers=workers, quiet=True)
    console.rule("3. info")
    info(frames)
    console.rule("4. read clips")
    rows = [r for r in read_index(frames / "index.csv") if r.split == "val"][:4]
    for row in rows:
        with FrameStore(frames / row.path) as store:
            idx = np.linspace(0, len(store) - 1, 16).round().astype(int)
            t = time.perf_counter()
            clip = store.get_frames(idx)
            ms = (time.perf_counter() - t) * 1e3
        console.print(f"{row.label:>11s}/{row.id}: {len(store)} frames -> clip {tuple(clip.shape)} uint8 RGB "
                      f"(frames {idx[0]}..{idx[-1]}) in {ms:.1f} ms, one SQL query")
    if epochs > 0:
        from vidnet.cli.train import quickstart_training

        console.rule("5. train and validate")
        quickstart_training(frames, workdir / "runs", epochs=epochs)
    console.print(f"[green]quickstart done[/green] in {time.perf_counter() - t0:.1f} s; data in {workdir}/")
