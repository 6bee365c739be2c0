"""``vidnet train``: train a registered network on a converted dataset (see docs/train.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vidnet.cli._app import app
from vidnet.cli._progress import console
from vidnet.errors import UsageError

if TYPE_CHECKING:
    from vidnet.train.config import TrainConfig

_DATA, _MODEL, _OPTIM, _SCHED, _RUN = "Data", "Model", "Optimizer", "Schedule and multigrid", "Run"
_DISTILL = "Distillation"


def _opt(*names: str, help: str, panel: str) -> Any:  # noqa: A002 - typer's keyword
    """A typer option whose default is None (so a config file can fill it); the help shows the real default."""
    name = names[0].split("/")[0].removeprefix("--").replace("-", "_")
    default = _defaults().get(name)
    if default not in (None, "", ()):
        shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
        shown = {True: "on", False: "off"}.get(shown, shown) if isinstance(shown, bool) else shown
        help = f"{help} (default {shown})"
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False)


def _defaults() -> dict[str, Any]:
    from dataclasses import MISSING, fields

    from vidnet.train.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, ScheduleConfig

    out = {}
    for cls in (DataConfig, ModelConfig, OptimConfig, ScheduleConfig, RunConfig, DistillConfig):
        for f in fields(cls):
            out[f.name] = f.default if f.default is not MISSING else None
    return out


@app.command(context_settings={"allow_extra_args": False})
def train(
    network: Annotated[
        str | None, _opt("--network", "-n", help="Registered model name (vidnet models).", panel=_MODEL)
    ] = None,
    dataset: Annotated[
        str | None, _opt("--dataset", "-d", help="Dataset folder written by vidnet convert.", panel=_DATA)
    ] = None,
    config: Annotated[
        Path | None,
        _opt(
            "--config",
            help="YAML/TOML file with any of these options (flat or in sections); options given here override it.",
            panel=_RUN,
        ),
    ] = None,
    split: Annotated[str | None, _opt("--split", help="Training split.", panel=_DATA)] = None,
    val_split: Annotated[
        str | None, _opt("--val-split", help="Validation split; '' skips validation.", panel=_DATA)
    ] = None,
    clip_length: Annotated[int | None, _opt("--clip-length", help="Frames per clip T.", panel=_DATA)] = None,
    clip_size: Annotated[str | None, _opt("--clip-size", help="Crop side S, or H,W.", panel=_DATA)] = None,
    train_frame_interval: Annotated[
        str | None,
        _opt(
            "--train-frame-interval", help="Frame step of training clips: 2, a list 1,2,4 or a range 2-4.", panel=_DATA
        ),
    ] = None,
    val_frame_interval: Annotated[
        int | None, _opt("--val-frame-interval", help="Frame step of validation clips.", panel=_DATA)
    ] = None,
    augment: Annotated[
        str | None,
        _opt(
            "--augment",
            help="Augmentation preset (ucf101, hmdb51, kinetics, jester, mict) or light (60-100% crops, no colour "
            "changes); default: the dataset's preset.",
            panel=_DATA,
        ),
    ] = None,
    workers: Annotated[
        int | None, _opt("--workers", "-j", help="Loader processes per GPU process.", panel=_DATA)
    ] = None,
    bad_data: Annotated[
        str | None, _opt("--bad-data", help="Unreadable clip: raise (stop, naming it) or skip.", panel=_DATA)
    ] = None,
    max_bad_fraction: Annotated[
        float | None,
        _opt(
            "--max-bad-fraction",
            help="With --bad-data skip: stop above this fraction of bad clips per epoch.",
            panel=_DATA,
        ),
    ] = None,
    pretrained_3d: Annotated[
        str | None,
        _opt("--pretrained-3d", help="Initialise from the matching weights of this checkpoint.", panel=_MODEL),
    ] = None,
    fine_tune: Annotated[
        bool | None,
        _opt(
            "--fine-tune/--no-fine-tune",
            help="Classifier at the full rate, the rest at 0.6 (needs --pretrained-3d).",
            panel=_MODEL,
        ),
    ] = None,
    channels_last: Annotated[
        bool | None, _opt("--channels-last/--no-channels-last", help="channels_last_3d memory format.", panel=_MODEL)
    ] = None,
    compile: Annotated[
        bool | None,
        _opt(
            "--compile/--no-compile",
            help="torch.compile the model.",  # noqa: A002
            panel=_MODEL,
        ),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        _opt(
            "--sync-bn/--no-sync-bn",
            help="SyncBatchNorm across processes (default: on with multigrid on several processes).",
            panel=_MODEL,
        ),
    ] = None,
    bn_sub_batch: Annotated[
        str | None,
        _opt(
            "--bn-sub-batch",
            help="BatchNorm statistics over groups of this many clips when the batch is larger: auto (groups of "
            "--batch-size with multigrid), off, or a number.",
            panel=_MODEL,
        ),
    ] = None,
    precise_bn: Annotated[
        str | None,
        _opt(
            "--precise-bn",
            help="Recompute BatchNorm statistics over N training batches before validating and saving: auto (200 "
            "with multigrid or runs under 100 steps), off, or N.",
            panel=_MODEL,
        ),
    ] = None,
    optimizer: Annotated[str | None, _opt("--optimizer", help="sgd or adamw.", panel=_OPTIM)] = None,
    lr_base: Annotated[
        float | None, _opt("--lr-base", help="Peak learning rate (default 0.1 for SGD, 1e-3 for AdamW).", panel=_OPTIM)
    ] = None,
    momentum: Annotated[float | None, _opt("--momentum", help="SGD momentum.", panel=_OPTIM)] = None,
    nesterov: Annotated[bool | None, _opt("--nesterov/--no-nesterov", help="Nesterov momentum.", panel=_OPTIM)] = None,
    weight_decay: Annotated[float | None, _opt("--weight-decay", help="Weight decay.", panel=_OPTIM)] = None,
    decay_norm_bias: Annotated[
        bool | None,
        _opt("--decay-norm-bias/--no-decay-norm-bias", help="Also decay norm and bias parameters.", panel=_OPTIM),
    ] = None,
    label_smoothing: Annotated[float | None, _opt("--label-smoothing", help="Label smoothing.", panel=_OPTIM)] = None,
    clip_grad: Annotated[
        float | None, _opt("--clip-grad", help="Clip the gradient norm to this value.", panel=_OPTIM)
    ] = None,
    accumulate: Annotated[int | None, _opt("--accumulate", help="Batches per optimizer step.", panel=_OPTIM)] = None,
    ema: Annotated[
        float | None, _opt("--ema", help="EMA of the weights with this decay (validated and saved).", panel=_OPTIM)
    ] = None,
    batch_size: Annotated[
        int | None, _opt("--batch-size", "-b", help="Clips per process per step B.", panel=_SCHED)
    ] = None,
    end_epoch: Annotated[int | None, _opt("--end-epoch", help="Epochs of the base schedule.", panel=_SCHED)] = None,
    lr_schedule: Annotated[str | None, _opt("--lr-schedule", help="multistep or cosine.", panel=_SCHED)] = None,
    lr_steps: Annotated[str | None, _opt("--lr-steps", help="Multistep epochs, e.g. 15,30,40.", panel=_SCHED)] = None,
    lr_factor: Annotated[float | None, _opt("--lr-factor", help="Multistep factor.", panel=_SCHED)] = None,
    warmup_epochs: Annotated[float | None, _opt("--warmup-epochs", help="Linear warm-up epochs.", panel=_SCHED)] = None,
    min_lr: Annotated[float | None, _opt("--min-lr", help="Cosine floor.", panel=_SCHED)] = None,
    long_cycles: Annotated[
        bool | None, _opt("--long-cycles/--no-long-cycles", help="Multigrid long cycle.", panel=_SCHED)
    ] = None,
    short_cycles: Annotated[
        bool | None, _opt("--short-cycles/--no-short-cycles", help="Multigrid short cycle.", panel=_SCHED)
    ] = None,
    epoch_factor: Annotated[
        float | None, _opt("--epoch-factor", help="Long cycle: epochs x this.", panel=_SCHED)
    ] = None,
    lr_scale_max: Annotated[
        float | None,
        _opt("--lr-scale-max", help="Long cycle: cap of the learning-rate multiplier (default: x8/x4/x2 uncapped).",
             panel=_SCHED),
    ] = None,
    long_cycle_min_frames: Annotated[
        int | None,
        _opt("--long-cycle-min-frames", help="Long cycle: leave out stages with clips shorter than this.",
             panel=_SCHED),
    ] = None,
    gpus: Annotated[
        str | None,
        _opt(
            "--gpus",
            help="0: CPU; N: N GPUs on this node (N > 1 starts N processes); a list 0,2,3 picks devices.",
            panel=_RUN,
        ),
    ] = None,
    precision: Annotated[str | None, _opt("--precision", help="fp32, bf16 or fp16.", panel=_RUN)] = None,
    model_dir: Annotated[
        str | None,
        _opt("--model-dir", help="Output root; the run folder is <model-dir>/<dataset>/<network>.", panel=_RUN),
    ] = None,
    save_frequency: Annotated[
        int | None, _opt("--save-frequency", help="Checkpoint every N epochs.", panel=_RUN)
    ] = None,
    keep_last: Annotated[
        int | None,
        _opt("--keep-last", help="Keep the N most recent resumable checkpoints (0: all); best.pth always stays. "
             "[default: 2]", panel=_RUN),
    ] = None,
    val_frequency: Annotated[int | None, _opt("--val-frequency", help="Validate every N epochs.", panel=_RUN)] = None,
    resume: Annotated[
        str | None, _opt("--resume", help="auto (latest checkpoint of the run folder) or a path.", panel=_RUN)
    ] = None,
    resume_epoch: Annotated[
        int | None, _opt("--resume-epoch", help="Resume from the checkpoint after this epoch.", panel=_RUN)
    ] = None,
    random_seed: Annotated[int | None, _opt("--random-seed", help="Seed.", panel=_RUN)] = None,
    log_file: Annotated[str | None, _opt("--log-file", help="Log file.", panel=_RUN)] = None,
    log_interval: Annotated[int | None, _opt("--log-interval", help="Steps between log lines.", panel=_RUN)] = None,
    debug_mode: Annotated[
        bool | None, _opt("--debug-mode/--no-debug-mode", help="Debug log and anomaly detection.", panel=_RUN)
    ] = None,
    nan_patience: Annotated[
        int | None, _opt("--nan-patience", help="Stop after N non-finite losses in a row.", panel=_RUN)
    ] = None,
    tensorboard: Annotated[
        bool | None, _opt("--tensorboard/--no-tensorboard",
                             help="TensorBoard events in <run>/tb (default: when installed; pip install "
                             "'vidnet\\[tb]').", panel=_RUN)
    ] = None,
    max_steps: Annotated[
        int | None, _opt("--max-steps", help="Stop after this optimizer step, with a resumable checkpoint.", panel=_RUN)
    ] = None,
    teacher: Annotated[
        str | None,
        _opt("--teacher", help="Distil from this trained checkpoint (frozen, eval mode, same clips).", panel=_DISTILL),
    ] = None,
    teacher_network: Annotated[
        str | None,
        _opt("--teacher-network", help="Teacher's registered name, if its checkpoint does not name it.",
             panel=_DISTILL),
    ] = None,
    distill_alpha: Annotated[
        float | None,
        _opt("--distill-alpha", help="Weight of the teacher's soft targets; 1 - alpha on the labels.", panel=_DISTILL),
    ] = None,
    distill_temperature: Annotated[
        float | None, _opt("--distill-temperature", help="Softmax temperature of the soft targets.", panel=_DISTILL)
    ] = None,
) -> None:
    """Train a network: multigrid cycles, mixed precision, several GPUs through torchrun, exact resume.

    Example: vidnet train --network srtg_r3d_18 --dataset data/ucf101 --batch-size 32 --gpus 1 --precision bf16
    """
    given = {k: v for k, v in locals().items() if k != "config" and v is not None}  # only what was typed
    from vidnet._io import remove_orphan_temporaries
    from vidnet.train.distributed import launch, under_torchrun
    from vidnet.train.loop import run_folder
    from vidnet.train.loop import train as run_training

    cfg = train_config(config, given)
    if cfg.run.gpus > 1 and not under_torchrun():
        import torch

        if torch.cuda.device_count() < cfg.run.gpus:
            raise UsageError(f"--gpus {cfg.run.gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")
        console.print(f"starting {cfg.run.gpus} processes through torch.distributed.run")
        raise typer.Exit(launch(cfg.run.gpus, sys.argv[1:]))
    remove_orphan_temporaries(run_folder(cfg))  # a checkpoint save killed mid-write left its temporary file
    result = run_training(cfg)
    if os.environ.get("RANK", "0") != "0":  # only rank 0 reports
        if result.stopped == "interrupted":
            raise typer.Exit(130)
        return
    if result.stopped:
        console.print(
            f"[yellow]stopped ({result.stopped})[/yellow] after {result.steps} steps; continue with "
            f"--resume auto (run folder {result.run_dir})"
        )
        if result.stopped == "interrupted":  # the checkpoint is saved; Ctrl-C still exits as Ctrl-C does
            raise typer.Exit(130)
    elif result.val:
        console.print(
            f"[green]done[/green]: {result.epochs} epochs, {result.steps} steps in {result.wall_s:.1f} s; "
            f"val top1 {result.val['top1']:.2%} (best {result.best_top1:.2%}), run folder {result.run_dir}"
        )
    else:
        console.print(
            f"[green]done[/green]: {result.epochs} epochs, {result.steps} steps in {result.wall_s:.1f} s; "
            f"run folder {result.run_dir}"
        )


def train_config(config: Path | None, given: dict[str, Any]) -> TrainConfig:
    """The run's configuration: the ``--config`` file's values, overridden by the options typed (``given``)."""
    from vidnet.train.config import TrainConfig, load_config_file

    values: dict[str, Any] = load_config_file(config) if config else {}
    values.update(given)
    if "gpus" in given:
        values["gpus"] = _parse_gpus(given["gpus"])
    return TrainConfig.from_flat(values)


def parse_train_args(args: list[str]) -> tuple[TrainConfig, dict[str, Any]]:
    """``vidnet train`` options given as words (as ``vidnet slurm train`` forwards them): the configuration
    they make and the options typed. A bad option is a usage error, as on ``vidnet train``'s command line."""
    if "--help" in args or "-h" in args:
        raise UsageError("see vidnet train --help for the training options")
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    try:
        ctx = command.make_context("vidnet train", list(args))
    except typer.TyperException as err:  # click's parse errors (typer bundles click)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        raise UsageError(f"vidnet train options: {message}") from None
    given = {k: v for k, v in ctx.params.items() if k != "config" and v is not None}
    return train_config(ctx.params.get("config"), given), given


def _parse_gpus(text: str | int) -> int:
    """``4`` -> 4 GPUs; ``0,2,3`` -> 3 GPUs with CUDA_VISIBLE_DEVICES=0,2,3 (the original took a device list)."""
    text = str(text).strip()
    try:
        if "," in text:
            ids = [int(t) for t in text.split(",") if t.strip()]
            if not os.environ.get("CUDA_VISIBLE_DEVICES"):
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
            return len(ids)
        n = int(text)
    except ValueError:
        raise UsageError(f"--gpus {text!r}: give a count (0 for the CPU) or a device list like 0,1,2") from None
    if n < 0:
        raise UsageError(f"--gpus {text!r}: must be 0 or more")
    return n


def quickstart_training(
    frames: Path, runs: Path, *, epochs: int = 16, workers: int = 1, batch_size: int = 16
) -> dict[str, float]:
    """The quickstart's training step: ``tiny_3d`` on 8-frame clips next to ``tiny_2d`` on single frames.

    Both are trained the same way (AdamW, cosine schedule, light augmentation, 72x96 clips) on the sample
    dataset, whose classes differ only in motion: the 3D model reaches about 90 % validation accuracy, the
    single-frame model stays far lower. Returns the final validation top-1 of each network.
    """
    from rich.table import Table

    from vidnet._io import atomic_write_json
    from vidnet.data.index import read_labels
    from vidnet.data.sample import sample_dataset_json
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train as run_training

    if not (frames / "dataset.json").is_file():
        # Sample videos written before `vidnet sample` wrote dataset.json: a flip would swap move_left's label.
        atomic_write_json(frames / "dataset.json", sample_dataset_json(len(read_labels(frames / "labels.json"))))
    common = {"dataset": str(frames), "model_dir": str(runs), "clip_size": (72, 96), "batch_size": batch_size,
              "end_epoch": epochs, "lr_schedule": "cosine", "warmup_epochs": 1, "optimizer": "adamw",
              "lr_base": 3e-3, "weight_decay": 0.05, "augment": "light", "workers": workers,
              "save_frequency": epochs, "val_frequency": epochs, "log_interval": 1000, "tensorboard": False,
              "random_seed": 1}
    runs_to_do = [("tiny_3d", {"clip_length": 8, "train_frame_interval": 4, "val_frame_interval": 4}),
                  ("tiny_2d", {"clip_length": 1})]
    results = {}
    for network, extra in runs_to_do:
        console.rule(f"train {network} ({'8 frames' if extra['clip_length'] > 1 else 'single frame'}, {epochs} epochs)")
        res = run_training(TrainConfig.from_flat({**common, **extra, "network": network}))
        results[network] = res.val.get("top1", 0.0)
        console.print(f"{network}: val top1 {results[network]:.1%} after {res.steps} steps in {res.wall_s:.0f} s")
    table = Table(title="validation clip accuracy (sample dataset, classes differ only in motion)")
    for col in ("network", "input", "top-1"):
        table.add_column(col)
    table.add_row("tiny_3d", "8 frames, 72x96", f"{results['tiny_3d']:.1%}")
    table.add_row("tiny_2d", "1 frame, 72x96", f"{results['tiny_2d']:.1%}")
    console.print(table)
    return results
