"""``vidnet test``, ``predict``, ``fuse`` and ``report``: evaluation, single-video prediction, model fusion, and
a training run's curves and summary."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from vidnet.cli._app import app
from vidnet.cli._progress import make_progress
from vidnet.errors import UsageError, VidnetError

_NET = typer.Option("--network", help="Model name, for a bare state dict (weights trained elsewhere).")
_LABELS = typer.Option("--labels", help="labels.json for a bare state dict (or to override the checkpoint's).")


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise UsageError(f"--top-k: expected numbers like 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise UsageError(f"--top-k: expected positive numbers like 1,5,10, got {text!r}")
    return ks


def _print_summary(title: str, s, names: list[str], ks: tuple[int, ...]) -> None:
    tops = "  ".join(f"top{k} {s.topk[k]:.2%}" for k in ks)
    loss = "n/a" if s.loss is None else f"{s.loss:.4f}"
    typer.echo(f"{title:<48} {tops}  mean class acc {s.mean_class_accuracy:.2%}  loss {loss}  ({s.n} videos)")


def _show(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it (shorter, copy-pasteable output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _print_rankings(s, names: list[str]) -> None:
    typer.echo("best classes:  " + ", ".join(f"{names[c.index]} {c.accuracy:.0%} ({c.support})" for c in s.best))
    typer.echo("worst classes: " + ", ".join(f"{names[c.index]} {c.accuracy:.0%} ({c.support})" for c in s.worst))
    pairs = ", ".join(f"{names[p.true]} -> {names[p.predicted]} x{p.count}" for p in s.confused) or "none"
    typer.echo(f"most confused: {pairs}")


@app.command("test")
def test_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint (.pth) or bare state dict.")],
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder written by vidnet convert.")],
    split: Annotated[str, typer.Option(help="Split of index.csv to evaluate.")] = "val",
    clips: Annotated[int, typer.Option(help="Temporal clips per video for video accuracy.", min=1)] = 10,
    crops: Annotated[int, typer.Option(help="Spatial crops per clip for video accuracy: 1 or 3.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Clips per forward pass.", min=1)] = 16,
    top_k: Annotated[str, typer.Option("--top-k", help="Top-k accuracies to report.")] = "1,5,10",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <checkpoint dir>/../test-<split>).")] = None,
    workers: Annotated[int, typer.Option(help="DataLoader workers.", min=0)] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    amp: Annotated[bool, typer.Option(help="bfloat16 autocast.")] = False,
    network: Annotated[str | None, _NET] = None,
    labels: Annotated[Path | None, _LABELS] = None,
    per_frame: Annotated[bool | None, typer.Option(
        "--per-frame/--no-per-frame",
        help="Also score every frame alone and average their log-probabilities (default: on for single-frame "
             "2D models: trained on 1-frame clips, or tagged 2d / frame2d in the registry).")] = None,
    whole_video: Annotated[bool, typer.Option(
        "--whole-video", help="Also classify each whole video in one forward pass (at the checkpoint's "
                              "validation frame interval).")
    ] = False,
    html: Annotated[bool, typer.Option(
        "--html", help="Also write report.html: an offline page to explore the results and look at the "
                       "mispredicted clips (animated thumbnails from their frames.db).")] = False,
) -> None:
    """Clip accuracy (one centre clip) and video accuracy (clips x crops views, softmax averaged)."""
    from vidnet.eval.metrics import summarize
    from vidnet.eval.multiview import (
        is_single_frame,
        load_eval_model,
        make_dataset,
        make_sequence_dataset,
        predict_dataset,
        predict_sequences,
    )
    from vidnet.eval.report import write_report

    ks = _ks(top_k)
    if crops not in (1, 3):
        raise UsageError(f"--crops must be 1 or 3, got {crops}")
    em = load_eval_model(checkpoint, network=network, labels=labels)
    out = out or checkpoint.resolve().parent.parent / f"test-{split}"
    per_frame = is_single_frame(em) if per_frame is None else per_frame
    titles = {"clip": "clip accuracy (1 centre clip)", "video": f"video accuracy ({clips} clips x {crops} crops)"}
    if per_frame:
        titles["frames"] = "per-frame average (every frame, mean log-prob)"
    if whole_video:
        titles["sequence"] = f"whole video (one pass, interval {em.interval})"
    results = {}
    t0 = time.perf_counter()
    for name in titles:
        if name in ("clip", "video"):
            n, k = (1, 1) if name == "clip" else (clips, crops)
            ds = make_dataset(dataset, split, em, clips=n, crops=k)
            what = f"{n}x{k} views"
            predict = predict_dataset
        else:
            ds = make_sequence_dataset(dataset, split, em, mode=name)
            what = "every frame" if name == "frames" else "whole videos"
            predict = functools.partial(predict_sequences, mode=name)
        with make_progress() as progress:
            task = progress.add_task(f"{name} ({what})", total=len(ds), info="")
            advance = lambda b, task=task: progress.advance(task, b)  # noqa: E731
            preds = predict(em, ds, batch_size=batch_size, workers=workers, device=device, amp=amp, on_batch=advance)
        results[name] = (preds, summarize(preds.log_probs(), preds.labels, ks=ks))
    names = em.class_names
    frames = f"{em.clip_length} frame{'s' * (em.clip_length != 1)}"
    typer.echo(f"{em.network} on {dataset} [{split}], {frames} at {em.clip_size[0]}x{em.clip_size[1]}, "
               f"interval {em.interval}")
    for name, title in titles.items():
        _print_summary(f"{title}:", results[name][1], names, ks)
    _print_rankings(results["video"][1], names)
    meta = {"checkpoint": str(checkpoint), "network": em.network, "dataset": str(dataset),
            "dataset_root": str(dataset.resolve()), "split": split, "clips": clips, "crops": crops,
            "clip_length": em.clip_length, "clip_size": list(em.clip_size), "interval": em.interval,
            "protocols": list(titles), "seconds": round(time.perf_counter() - t0, 3)}
    written = write_report(out, results, k=max(ks), meta=meta, titles=titles)
    if not any(p.suffix == ".png" for p in written):
        typer.echo("note: confusion heatmap not drawn (matplotlib missing: pip install 'vidnet[plot]')")
    typer.echo(f"saved {len(written)} files in {_show(out)}")
    if html:
        run = checkpoint.resolve().parent.parent
        has_logs = (run / "train.csv").is_file() or (run / "val.csv").is_file()
        _write_html(out, out, run_dir=run if has_logs else None)


def _write_html(out: Path, test_dir: Path, **kwargs) -> None:
    """`write_explorer` with a progress bar for the thumbnails; prints where the page is and its size."""
    from vidnet.eval.explorer import write_explorer

    with make_progress("clips") as progress:
        task = None

        def step(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task("thumbnails", total=total, info="")
            progress.update(task, completed=done)

        res = write_explorer(out, test_dir, progress=step, **kwargs)
    for key, reason in res.failed[:3]:
        typer.echo(f"warning: no thumbnail for {key}: {reason}", err=True)
    if len(res.failed) > 3:
        typer.echo(f"warning: {len(res.failed) - 3} more clips without a thumbnail (listed on the page)", err=True)
    typer.echo(f"wrote {_show(res.page)} ({res.page_bytes / 1e6:.2f} MB, {res.thumbnails} thumbnails "
               f"{res.thumb_bytes / 1e6:.2f} MB, {res.seconds:.1f} s)")


def _reader(source: Path):
    """``(n_frames, read(indices, min_size_for))`` of a frames.db (or its folder) or a video file.

    ``min_size_for(stored (h, w))`` gives the reduced JPEG decode size the evaluation transform allows: a store
    is decoded exactly as `vidnet.data.dataset.VideoClipDataset` decodes it for ``vidnet test``.
    """
    from vidnet.data.store import STORE_NAME, FrameStore, decode_frames, jpeg_size

    if source.is_dir() and not (source / STORE_NAME).is_file():
        raise UsageError(f"{source}: a folder without a {STORE_NAME}: give a video file or a frame store")
    if source.is_dir() or source.name == STORE_NAME or source.suffix == ".db":
        store = FrameStore(source)

        def read_store(idx, min_size_for):
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
            blobs = store.get_bytes(idx)
            return decode_frames(store.path, idx, blobs, min_size_for(jpeg_size(blobs[0])) if blobs else None)

        return len(store), read_store
    from vidnet.data.video import iter_video_frames

    if not source.exists():
        raise UsageError(f"{source}: no such video file or frame store")
    if not source.is_file():
        raise UsageError(f"{source}: not a regular file (give a video file or a frame store)")
    # The decoder is the truth about the frame count; the frames of a clip to classify fit in memory.
    frames = np.stack(list(iter_video_frames(source)))
    return len(frames), lambda idx, min_size_for: frames[np.asarray(idx)]


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="A video file (any format PyAV reads) or a frames.db.")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint (.pth) or bare state dict.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels to show.", min=1)] = 5,
    clips: Annotated[int, typer.Option(help="Temporal clips (1 = the centre clip).", min=1)] = 10,
    crops: Annotated[int, typer.Option(help="Spatial crops: 1 or 3.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    network: Annotated[str | None, _NET] = None,
    labels: Annotated[Path | None, _LABELS] = None,
) -> None:
    """Classify one video with a checkpoint's label map and preprocessing."""
    from vidnet.eval.metrics import softmax, topk_indices
    from vidnet.eval.multiview import load_eval_model, predict_frames

    t0 = time.perf_counter()
    em = load_eval_model(checkpoint, network=network, labels=labels)
    n, read = _reader(source)
    logits = predict_frames(em, n, read, clips=clips, crops=crops, device=device)
    probs = softmax(logits).mean(axis=0)
    top = topk_indices(probs[None], top_k)[0]
    seconds = time.perf_counter() - t0
    result = {"source": str(source), "frames": n, "views": int(logits.shape[0]), "seconds": round(seconds, 3),
              "top": [{"label": em.class_names[c], "score": float(probs[c])} for c in top]}
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{source} ({n} frames, {logits.shape[0]} views, {seconds:.2f} s):")
    for rank, item in enumerate(result["top"], 1):
        typer.echo(f"  {rank}. {item['label']:<30} {item['score']:.4f}")


@app.command()
def fuse(
    predictions: Annotated[list[Path], typer.Argument(help="Two or more *_logits.npz files written by vidnet test.")],
    weights: Annotated[str | None, typer.Option(help="Comma-separated weight per model (default equal).")] = None,
    method: Annotated[str, typer.Option(help="mean (of probabilities) or logsum (sum of log-probabilities).")] = "mean",
    top_k: Annotated[str, typer.Option("--top-k", help="Top-k accuracies to report.")] = "1,5",
    out: Annotated[Path | None, typer.Option(help="Write the fused predictions and analysis here.")] = None,
) -> None:
    """Combine saved predictions of several models; prints each model and the fusion side by side."""
    from vidnet.eval.fusion import fuse_predictions
    from vidnet.eval.metrics import summarize
    from vidnet.eval.multiview import Predictions

    ks = _ks(top_k)
    if len(predictions) < 2:
        raise UsageError("fuse needs at least two prediction files")
    models = [Predictions.load(p) for p in predictions]
    w = None
    if weights:
        try:
            w = [float(x) for x in weights.split(",")]
        except ValueError:
            raise UsageError(f"--weights: expected numbers, got {weights!r}") from None
    fused = fuse_predictions(models, weights=w, method=method)
    for path, p in zip(predictions, models, strict=True):
        _print_summary(f"{p.model or path.name}:", summarize(p.log_probs(), p.labels, ks=ks), p.class_names, ks)
    s = summarize(fused.log_probs(), fused.labels, ks=ks)
    _print_summary(f"fused ({method}):", s, fused.class_names, ks)
    _print_rankings(s, fused.class_names)
    if out is not None:
        from vidnet.eval.report import write_report

        write_report(out, {"fused": (fused, s)}, k=max(ks), meta={"inputs": [str(p) for p in predictions],
                                                                  "method": method, "weights": w})
        typer.echo(f"saved fused results in {out}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A training run folder (runs/<dataset>/<network>).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the run folder).")] = None,
    html: Annotated[bool, typer.Option(
        "--html", help="Write report.html instead: an offline page with the run, its curves, the confusion "
                       "matrix, per-class accuracy and the mispredicted clips (needs a vidnet test output).")
    ] = False,
    test_dir: Annotated[Path | None, typer.Option(
        "--test", help="With --html: the vidnet test output to explore (default: the first found in or next "
                       "to the run, as report.md lists them).")] = None,
    protocol: Annotated[str, typer.Option(help="With --html: the protocol to explore (video, clip, frames, "
                                               "sequence).")] = "video",
    compare: Annotated[Path | None, typer.Option(
        help="With --html: a second model to compare with: another run, a vidnet test folder, a vidnet fuse "
             "--out folder or a *_logits.npz.")] = None,
    dataset: Annotated[Path | None, typer.Option(
        "--dataset", "-d", help="With --html: the tested dataset, when the path the test recorded has moved.")
    ] = None,
) -> None:
    """Training curves (curves.png: loss, top-1, top-5, LR, clips/s, train vs val) and a report.md summary;
    with --html, report.html to explore the results and the clips."""
    from vidnet.eval.report import PLOT_HINT, PlotUnavailable
    from vidnet.eval.run_report import find_test_summaries, read_run, report_run

    if html:
        from vidnet.eval.explorer import load_comparison

        read_run(run_dir)  # a run folder, or a one-line error
        if test_dir is None:
            found = [p.parent for p, _ in find_test_summaries(run_dir)
                     if (p.parent / f"{protocol}_logits.npz").is_file()]
            if not found:
                raise UsageError(f"{run_dir}: no vidnet test output with {protocol} predictions in or next to it; "
                                 "run `vidnet test -c CHECKPOINT -d DATASET` first, or give --test DIR")
            test_dir = found[0]
        other = load_comparison(compare, protocol) if compare is not None else None
        _write_html(out or run_dir, test_dir, run_dir=run_dir, protocol=protocol, compare=other,
                    compare_name=f"{other.model} ({compare})" if other is not None else None, dataset=dataset)
        return
    for name, value in (("--test", test_dir), ("--compare", compare), ("--dataset", dataset)):
        if value is not None:
            raise UsageError(f"{name} goes with --html")

    try:
        md, png = report_run(run_dir, out)
    except PlotUnavailable:
        written = (out or run_dir) / "report.md"
        raise VidnetError(f"matplotlib is not installed, curves not drawn: {PLOT_HINT} "
                          f"(the summary was written to {written})") from None
    typer.echo(f"wrote {_show(png)} and {_show(md)}")
