"""``vidnet profile``, ``vidnet compress`` and ``vidnet export``: model cost, compression and deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vidnet.cli._app import app
from vidnet.errors import UsageError


def _expand_networks(patterns: list[str]) -> list[str]:
    from vidnet.network import UnknownModelError, resolve_names

    try:
        return list(dict.fromkeys(n for pattern in patterns if pattern.strip() for n in resolve_names(pattern)))
    except UnknownModelError as err:
        raise UsageError(f"--network: {err}") from None


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _ms(t) -> str:
    return f"{t.median_ms:.1f} ± {t.iqr_ms / 2:.1f}" if t is not None else "-"


@app.command("profile")
def profile_command(
    network: Annotated[list[str], typer.Option("--network", "-n", help="Model name(s); wildcards and commas ok.")],
    clip: Annotated[str, typer.Option(help="Clip size TxHxW.")] = "16x112x112",
    batch: Annotated[int, typer.Option(help="Clips per timed batch.")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32, or autocast bf16 / fp16.")] = "fp32",
    repeats: Annotated[int, typer.Option(help="Timed runs per measurement.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed runs before them.")] = 2,
    num_classes: Annotated[int, typer.Option(help="Classifier outputs.")] = 400,
    backward: Annotated[bool, typer.Option(help="Also time forward + backward.")] = True,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """Parameters, GMACs, latency, peak memory per clip and throughput of one or more networks.

    MACs are multiply-accumulates (FLOPs = 2 x MACs). Latency is the median over --repeats after --warmup
    runs, ± half the interquartile range. Memory is per clip: CUDA max_memory_allocated, or on CPU the
    sampled rise of the resident set size (an estimate). "pub" columns quote the Efficient-3DCNNs table
    (Köpüklü et al. ICCVW 2019 Table 8: 600 classes, thop MFLOPs) next to our count at 600 classes. For X3D,
    SlowFast and MViTv2 a second table puts their published Kinetics-400 GFLOPs per view, parameters and top-1
    beside our count at the same view.
    """
    from vidnet._parse import parse_clip
    from vidnet.network.profile import profile_model

    _set_threads(threads)
    frames = parse_clip(clip)
    names = _expand_networks(network)
    results = []
    for name in names:
        try:
            r = profile_model(name, clip=frames, batch=batch, device=device, precision=precision,  # type: ignore
                              repeats=repeats, warmup=warmup, backward=backward, num_classes=num_classes)
        except UsageError:
            raise
        except Exception as err:  # one model that cannot run this clip must not hide the others' rows
            typer.secho(f"warning: {name}: {type(err).__name__}: {err}", fg=typer.colors.YELLOW, err=True)
            continue
        results.append(r)
        if as_json:
            typer.echo(json.dumps(r.to_dict()))
    if not results:
        raise UsageError(f"--network: none of {', '.join(names)} ran on a {clip} clip")
    if as_json:
        return
    from rich.console import Console
    from rich.table import Table

    r0 = results[0]
    table = Table(title=f"clip {clip}, batch {batch}, {r0.device}, {precision}, {repeats} repeats "
                        f"(latency ms: median ± IQR/2; memory: {r0.memory_method})")
    for col in ("network", "params (M)", "GMACs", "fwd ms", "fwd+bwd ms", "MB/clip", "clips/s", "frames/s",
                "MMACs@600", "pub MFLOPs", "pub params (M)"):
        table.add_column(col, justify="left" if col == "network" else "right")
    for r in results:
        table.add_row(
            r.network, f"{r.params / 1e6:.3f}", f"{r.gmacs:.4f}", _ms(r.forward), _ms(r.forward_backward),
            f"{r.memory_per_clip / 2**20:.1f}", f"{r.clips_per_s:.1f}", f"{r.frames_per_s:.0f}",
            f"{r.macs_600 / 1e6:.1f}" if r.macs_600 else "-",
            f"{r.published_mflops:g}" if r.published_mflops else "-",
            f"{r.published_params / 1e6:.2f} ({r.params_600 / 1e6:.2f})" if r.published_params else "-",
        )
    console = Console(width=200)
    console.print(table)
    papers = [r for r in results if r.paper is not None]
    if papers:
        pub = Table(title="published Kinetics-400 figures beside ours (zoo GFLOPs count a multiply-add as one FLOP; "
                          "ours: 400 classes, one view)")
        for col in ("network", "view", "pub GFLOPs x views", "our GMACs/view", "pub params (M)", "our params (M)",
                    "pub top-1", "source"):
            pub.add_column(col, justify="left" if col in ("network", "source") else "right")
        for r in papers:
            p = r.paper
            pub.add_row(r.network, "x".join(map(str, p.clip)), f"{p.gflops:g} x {p.views}",
                        f"{r.macs_paper_clip / 1e9:.2f}", f"{p.params / 1e6:.2f}", f"{r.params_400 / 1e6:.3f}",
                        f"{p.top1:g}", p.source)
        console.print(pub)


def _floats(text: str, flag: str) -> list[float]:
    if not text.strip():
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _calibration(dataset, mean, std, frames: tuple[int, int, int], n: int) -> tuple[list, str]:
    import torch

    if dataset is None:
        g = torch.Generator().manual_seed(0)
        return [torch.randn((1, 3, *frames), generator=g) for _ in range(n)], "random clips"
    from vidnet.data.preprocessing import normalize

    clips = [normalize(dataset[i]["clip"].unsqueeze(0), mean, std) for i in range(min(n, len(dataset)))]
    return clips, f"{len(clips)} evaluation clips"


@app.command("compress")
def compress_command(
    network: Annotated[list[str] | None, typer.Option("--network", "-n", help="Model name(s); wildcards ok.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Trained checkpoint or weights.")] = None,
    ratios: Annotated[str, typer.Option(help="Structured prune ratios, comma-separated.")] = "0.25,0.5,0.75",
    sparsity: Annotated[str, typer.Option(help="Unstructured magnitude sparsities.")] = "0.5,0.9",
    quantize: Annotated[str, typer.Option(help="int8 variants: dynamic, static (comma-separated, or '').")]
    = "dynamic,static",
    clip: Annotated[str | None, typer.Option(help="Clip TxHxW (default: the checkpoint's, else 16x112x112).")]
    = None,
    num_classes: Annotated[int | None, typer.Option(help="Classifier outputs (default: checkpoint or 400).")]
    = None,
    dataset: Annotated[str | None, typer.Option(help="Converted dataset for accuracy (needs --checkpoint).")]
    = None,
    split: Annotated[str, typer.Option(help="Split for accuracy and calibration.")] = "val",
    limit: Annotated[int | None, typer.Option(help="Evaluate at most this many clips.")] = None,
    calibration: Annotated[int, typer.Option(help="Clips for static-quantization calibration.")] = 8,
    repeats: Annotated[int, typer.Option(help="Timed CPU forwards per variant.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Save every variant here as <network>_<variant>.pt.")] = None,
    finetune_epochs: Annotated[int, typer.Option(
        help="Fine-tune each pruned model for this many epochs on --dataset (needs a training --checkpoint and "
        "--out; runs vidnet train with the checkpoint's settings).")] = 0,
    finetune_lr: Annotated[float | None, typer.Option(
        help="Peak (cosine) learning rate of the fine-tune (default: a tenth of the checkpoint's --lr-base).")]
    = None,
    finetune_distill: Annotated[float, typer.Option(
        help="Distil from the unpruned checkpoint during the fine-tune with this alpha (0: labels only).")] = 0.0,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of tables.")] = False,
) -> None:
    """Prune (structured L1 channels; unstructured magnitude), quantize (int8) and compare the variants.

    Each network's base model and its variants are measured on the CPU at batch 1: parameters, MACs, size
    of the saved state_dict, forward latency (median, IQR), largest logit change from the base on a fixed
    clip relative to the base's largest logit, and, with --dataset, single-clip top-1 on --split (through
    the training run's own validation pipeline when the checkpoint records its config). Structured pruning
    shrinks only inner channels (block middles, expansions), so the output shape never changes; pruned models
    are saved as weight files that carry their channel counts (vidnet train --pretrained-3d, test, export
    and compress rebuild them), int8 variants as TorchScript (.ts); the table is printed before anything is
    saved. With --finetune-epochs each pruned model is trained further (rows "prune R +ft").
    """
    import dataclasses

    import torch

    from vidnet import checkpoint as ckpt_io
    from vidnet._parse import parse_clip
    from vidnet.eval.multiview import clip_accuracy
    from vidnet.network.compress import (
        channel_spec,
        compare_variants,
        magnitude_prune,
        prune_channels,
        quantize_dynamic_int8,
        quantize_static_int8,
        recalibrate_batchnorm,
    )
    from vidnet.network.cost import count_macs
    from vidnet.network.weights import load_model, read_weight_file

    _set_threads(threads)
    modes = [q.strip() for q in quantize.split(",") if q.strip()]
    for q in modes:
        if q not in ("dynamic", "static"):
            raise UsageError(f"--quantize: expected dynamic and/or static, got {q!r}")
    if dataset is not None and checkpoint is None:
        raise UsageError("--dataset measures accuracy and needs a trained --checkpoint")
    eval_set = em = None
    meta: dict = {}
    frames = parse_clip(clip) if clip else (16, 112, 112)
    if checkpoint is not None:
        wf = read_weight_file(checkpoint)
        meta = wf.meta if wf.vidnet else {}
        if wf.labels:  # a vidnet checkpoint: network, labels and preprocessing come with it
            from vidnet.eval.multiview import load_eval_model, make_dataset

            em = load_eval_model(wf, network=network[0] if network else None)
            targets = [(em.model, em.network)]
            frames = parse_clip(clip) if clip else (em.clip_length, *em.clip_size)
            if dataset is not None:
                eval_set = make_dataset(dataset, split, em)
        elif dataset is not None:
            raise UsageError(f"{checkpoint}: --dataset needs a checkpoint written by vidnet train (with its labels)")
        else:
            loaded = load_model(wf, network=network[0] if network else None, num_classes=num_classes)
            targets = [(loaded.model, loaded.network)]
    elif network:
        targets = [(m.model, m.network) for m in (load_model(None, network=n, num_classes=num_classes)
                                                  for n in _expand_networks(network))]
    else:
        raise UsageError("give --network or --checkpoint")
    if finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs must be 0 or more, got {finetune_epochs}")
    if finetune_epochs and (dataset is None or out is None or not isinstance(meta.get("config"), dict)):
        raise UsageError("--finetune-epochs needs --dataset, --out and a --checkpoint written by vidnet train "
                         "(its settings drive the fine-tune)")
    evaluate = None
    if eval_set is not None:
        def evaluate(m):  # noqa: E306
            return clip_accuracy(m, eval_set, mean=em.mean, std=em.std, limit=limit)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for model, label in targets:
        notes = []
        if checkpoint is None:
            g = torch.Generator().manual_seed(1)
            recalibrate_batchnorm(model, [torch.randn((2, 3, *frames), generator=g) for _ in range(4)])
            notes.append("fresh weights, batch-norm statistics recalibrated on 8 random clips")
        variants: dict = {"base": (model, None)}
        pruned_files: dict[str, Path] = {}
        keep = {k: meta[k] for k in ("labels", "preprocessing", "config") if k in meta}
        for r in _floats(ratios, "--ratios"):
            pruned, _ = prune_channels(model, r)
            variants[f"prune {r:.2f}"] = (pruned, None)
            if out is not None and finetune_epochs and _registered(label):
                # The fine-tune starts from this file: weights plus channel counts, which vidnet train
                # --pretrained-3d, --teacher, test, export and compress itself rebuild.
                path = out / f"{label}_prune_{r:.2f}.pth"
                ckpt_io.save_model(path, model=pruned.state_dict(), network=label, architecture=channel_spec(pruned),
                                   prune_ratio=r, pruned_from=str(checkpoint) if checkpoint else None, **keep)
                pruned_files[f"prune {r:.2f}"] = path
        for name, path in list(pruned_files.items()):
            tuned = _finetune(path, meta["config"], dataset, split, out / "finetune" / name.replace(" ", "_"),
                              epochs=finetune_epochs, lr=finetune_lr, teacher=checkpoint if finetune_distill else None,
                              alpha=finetune_distill)
            variants[f"{name} +ft"] = (tuned, None)
            notes.append(f"+ft: {finetune_epochs} epochs of vidnet train from the pruned weights"
                         + (f", distilled from the unpruned model (alpha {finetune_distill:g})" if finetune_distill
                            else ""))
        for s in _floats(sparsity, "--sparsity"):
            variants[f"sparse {s:.2f}"] = (magnitude_prune(model, s), None)
        base_macs = count_macs(model, frames)
        if "dynamic" in modes:
            variants["int8 dynamic"] = (quantize_dynamic_int8(model), base_macs)
        if "static" in modes:
            calib, where = _calibration(eval_set, em.mean if em else None, em.std if em else None, frames,
                                        calibration)
            try:
                variants["int8 static"] = (quantize_static_int8(model, calib), base_macs)
                notes.append(f"int8 static calibrated on {where}")
            except UsageError as err:
                notes.append(f"int8 static skipped: {err}")
        rows = compare_variants(variants, clip=frames, repeats=repeats, evaluate=evaluate)
        if as_json:
            for row in rows:
                typer.echo(json.dumps({"network": label, **dataclasses.asdict(row)}))
        else:
            _print_compress_table(label, frames, rows, list(dict.fromkeys(notes)))
        if out is not None:  # after the table: a variant that cannot be saved loses no measurement
            for line in _save_variants(out, label, variants, frames, keep=keep, source=checkpoint,
                                       done=pruned_files):
                typer.echo(line, err=as_json)


def _save_variants(out: Path, label: str, variants: dict, frames: tuple[int, int, int], *, keep: dict,
                   source: Path | None, done: dict[str, Path]) -> list[str]:
    """Write every variant of ``label`` into ``out``, atomically, in a form vidnet reads back safely.

    Float variants (base, pruned, sparse, fine-tuned) are weight files (`vidnet.checkpoint.save_model`; pruned
    ones carry their channel counts), which every command loads. int8 variants hold quantized modules that
    have no plain state dict to rebuild from a name, so they are written as TorchScript (``.ts``, for
    deployment with ``torch.jit.load``); one that cannot be traced is reported and skipped. Returns one line
    per file or skip.
    """
    import torch

    from vidnet import checkpoint as ckpt_io
    from vidnet._io import atomic_path
    from vidnet.network.compress import channel_spec

    lines = []
    for name, (m, _) in variants.items():
        stem = f"{label}_{name.replace(' +', '_').replace(' ', '_')}"
        if name in done:
            lines.append(f"saved {done[name]}")
            continue
        if name.startswith("int8"):
            path = out / f"{stem}.ts"
            try:
                with torch.no_grad():
                    traced = torch.jit.trace(m, (torch.randn(1, 3, *frames),), check_trace=False)
                with atomic_path(path) as tmp:
                    torch.jit.save(traced, str(tmp))
            except Exception as err:  # noqa: BLE001 - a quantized graph tracing cannot handle: skip, say why
                lines.append(f"not saved: {name} ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
                continue
            lines.append(f"saved {path} (TorchScript)")
            continue
        arch = channel_spec(m) if _registered(label) else None
        path = ckpt_io.save_model(out / f"{stem}.pth", model=m.state_dict(), network=label,
                                  pruned_from=str(source) if source else None, variant=name,
                                  **({"architecture": arch} if arch is not None else {}), **keep)
        lines.append(f"saved {path}")
    return lines


def _registered(name: str) -> bool:
    from vidnet.network import model_info

    try:
        model_info(name)
    except KeyError:
        return False
    return True


def _finetune(pruned: Path, config: dict, dataset: str, split: str, model_dir: Path, *, epochs: int,
              lr: float | None, teacher: Path | None, alpha: float):
    """Train the pruned checkpoint for ``epochs`` with the original run's settings (cosine from ``lr``, no
    warm-up, CPU fp32), optionally distilled from the unpruned ``teacher``; returns the trained model."""
    import torch

    from vidnet.checkpoint import CHECKPOINT_DIR, latest_checkpoint
    from vidnet.network.weights import load_model
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    flat = {k: v for sec in config.values() if isinstance(sec, dict) for k, v in sec.items()}
    base_lr = flat.get("lr_base") or 0.1
    flat.update(dataset=dataset, val_split=split, end_epoch=epochs, lr_schedule="cosine", lr_steps=[],
                warmup_epochs=0, long_cycles=False, short_cycles=False, lr_base=lr or base_lr / 10,
                pretrained_3d=str(pruned), fine_tune=False, resume=None, resume_epoch=None, max_steps=None,
                model_dir=str(model_dir), gpus=0, precision="fp32" if flat.get("precision") == "fp16" else
                flat.get("precision", "fp32"), save_frequency=epochs, val_frequency=epochs, tensorboard=False,
                log_file=None, teacher=str(teacher) if teacher else None, teacher_network=None,
                distill_alpha=alpha if teacher else 0.5)
    threads = torch.get_num_threads()  # the trainer lowers it for its loader workers; latency needs it back
    try:
        result = train(TrainConfig.from_flat(flat))
    finally:
        torch.set_num_threads(threads)
    path = latest_checkpoint(result.run_dir / CHECKPOINT_DIR)
    if path is None:
        raise UsageError(f"fine-tune of {pruned} wrote no checkpoint in {result.run_dir}")
    return load_model(path).model


def _print_compress_table(label: str, frames: tuple[int, int, int], rows, notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    base = rows[0]
    table = Table(title=f"{label}: {frames[0]}x{frames[1]}x{frames[2]}, CPU batch 1 (latency ms: median ± IQR/2)",
                  caption="; ".join(notes) or None)
    for col in ("variant", "params (M)", "GMACs", "size (MB)", "latency ms", "speed-up", "sparsity",
                "rel. Δlogit", "top-1", "Δtop-1"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        acc = f"{100 * r.accuracy:.2f}" if r.accuracy is not None else "-"
        dacc = f"{100 * (r.accuracy - base.accuracy):+.2f}" if r.accuracy is not None else "-"
        table.add_row(r.variant, f"{r.params / 1e6:.3f}", f"{r.macs / 1e9:.4f}", f"{r.size_bytes / 2**20:.2f}",
                      f"{r.latency_ms:.1f} ± {r.latency_iqr_ms / 2:.1f}", f"{base.latency_ms / r.latency_ms:.2f}x",
                      f"{r.sparsity:.2f}", f"{r.rel_diff:.3g}", acc, dacc)
    Console(width=200).print(table)


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.onnx or .pt).")],
    network: Annotated[str | None, typer.Option("--network", "-n", help="Registered model name.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Trained checkpoint or weights.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    clip: Annotated[str, typer.Option(help="Example clip TxHxW.")] = "16x112x112",
    num_classes: Annotated[int | None, typer.Option(help="Classifier outputs (default: checkpoint or 400).")]
    = None,
    dynamic_time: Annotated[bool, typer.Option(help="Try a dynamic time axis.")] = True,
) -> None:
    """Export a model to ONNX or TorchScript and verify it against PyTorch (max abs diff printed).

    The batch axis is dynamic; the time axis too where the model verifies at a second clip length. ONNX
    needs the `export` extra (pip install 'vidnet\\[export]'). Exits non-zero if verification fails.
    """
    from vidnet._parse import parse_clip
    from vidnet.errors import VidnetError
    from vidnet.network.export import REL_TOL, export_model
    from vidnet.network.weights import load_model

    loaded = load_model(checkpoint, network=network, num_classes=num_classes)
    model, label = loaded.model, loaded.network
    result = export_model(model, output, fmt=fmt, clip=parse_clip(clip), dynamic_time=dynamic_time)  # type: ignore
    axes = "batch" + (", time" if result.dynamic_time else "") if result.dynamic_batch else "none"
    typer.echo(f"{label} -> {result.path} ({result.format}, dynamic axes: {axes})")
    for shape, diff, rel in result.checks:
        typer.echo(f"  input {'x'.join(map(str, shape))}: max abs diff {diff:.3g} (relative {rel:.3g})")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    if not result.ok:
        raise VidnetError(f"{result.path}: exported model differs from PyTorch beyond relative {REL_TOL:g}")
