"""The training loop of ``vidnet train``, meant to be read top to bottom.

`train` runs three phases, each one screen: `_setup` (process group, data, model, optimizer, resume,
loaders), `_train_epoch` (the steps of one epoch), and the end of each epoch (validation, then `_Saver`
writes checkpoints). The learning rate and the mini-batch shape come from pure functions of the position
(`vidnet.train.schedules`); mixed precision is one ``torch.autocast`` context plus a ``GradScaler`` that is
only enabled for fp16; only rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from vidnet import checkpoint as ckpt_io
from vidnet._io import atomic_write_text
from vidnet._log import get_logger
from vidnet.data.preprocessing import KINETICS_MEAN, KINETICS_STD, Preprocessing, normalize
from vidnet.errors import UsageError, VidnetError
from vidnet.eval.metrics import improves_best
from vidnet.train import distributed
from vidnet.train.config import TrainConfig
from vidnet.train.distill import Teacher, distillation_loss, load_teacher
from vidnet.train.hooks import ConsoleSink, CSVSink, Sinks, TensorBoardSink
from vidnet.train.multigrid import MultigridBatchSampler, check_shapes
from vidnet.train.precise_bn import SHORT_RUN_STEPS, bn_layers, resolve_precise_bn, update_bn_stats
from vidnet.train.schedules import MultigridSchedule, lr_at
from vidnet.train.sub_batch_norm import convert_sub_batch_norm, resolve_sub_batch

__all__ = ["train", "TrainResult", "build_optimizer", "run_folder", "evaluate", "preprocessing_of"]

log = get_logger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What a run ended with."""

    run_dir: Path
    epochs: int
    """Epochs completed (the schedule's end unless stopped early)."""
    steps: int
    """Optimizer steps taken in total (resumed runs count the earlier ones)."""
    val: dict[str, float] = field(default_factory=dict)
    """Last validation metrics (loss, top1, top5 as fractions)."""
    best_top1: float | None = None  # no validation yet
    wall_s: float = 0.0
    stopped: str | None = None
    """Why the run stopped before the end (``max_steps``, ``interrupted``), or None."""


def run_folder(cfg: TrainConfig) -> Path:
    """``<model-dir>/<dataset folder name>/<network>``: checkpoints, CSV files, config and log of a run."""
    return ckpt_io.run_folder(cfg.run.model_dir, cfg.data.dataset, cfg.model.network)


def preprocessing_of(cfg: TrainConfig) -> Preprocessing:
    """The preprocessing record of a run (saved in its checkpoints): its clip shape and intervals, Kinetics
    mean/std, and the transform family and flips of its dataset's ``dataset.json``."""
    d = cfg.data
    return Preprocessing.for_dataset(d.dataset, clip_length=d.clip_length, clip_size=tuple(d.clip_size),
                                     train_frame_interval=d.train_frame_interval,
                                     val_frame_interval=d.val_frame_interval, augment=d.augment)


@dataclass
class _Run:
    """Everything `_setup` builds; the epoch loop reads it and advances the position."""

    cfg: TrainConfig
    dist: Any
    run_dir: Path
    pre: Preprocessing
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: Any
    lr_fn: Any
    plan: MultigridSchedule
    multigrid: bool
    train_set: Dataset
    val_set: Dataset | None
    batches: MultigridBatchSampler
    loader: DataLoader
    val_loader: DataLoader | None
    teacher: Teacher | None
    labels: dict[str, int]
    architecture: dict | None
    autocast: Any
    criterion: nn.Module
    sinks: Sinks
    # the position
    start_epoch: int = 0
    start_iter: int = 0
    step: int = 0
    best_top1: float | None = None  # no validation yet
    resumed_sums: Any = None
    lr: float = 0.0
    """The learning rate of the latest step (logged with validation)."""
    precise_bn: int = 0
    """Training batches over which BatchNorm statistics are recomputed before validating and saving (0: off)."""
    planned_steps: int = 0
    """Optimizer steps of the whole run."""

    @property
    def device(self) -> torch.device:
        return self.dist.device


def train(
    cfg: TrainConfig,
    *,
    model: nn.Module | None = None,
    train_set: Dataset | None = None,
    val_set: Dataset | None = None,
) -> TrainResult:
    """Train ``cfg.model.network`` on ``cfg.data.dataset`` (or on the given model and datasets).

    Args:
        cfg: The resolved configuration.
        model: Use this model instead of building ``cfg.model.network`` (tests, benchmarks).
        train_set: Training dataset following `VideoClipDataset`'s contract (keys ``(index, T, H, W)``,
            items ``{"clip": uint8 [C,T,H,W], "label": int, "index": int}``, ``set_epoch``, ``labels``).
        val_set: Validation dataset, same contract; None with ``train_set`` given skips validation.

    Returns:
        A `TrainResult`.

    Raises:
        VidnetError: bad data (per ``--bad-data``), a non-finite loss ``--nan-patience`` times in a row, running
            out of memory, a missing, unsafe or mismatched checkpoint.
    """
    t_start = time.perf_counter()
    threads = torch.get_num_threads()  # _setup may lower it for the loader workers; restored at the end
    dist = distributed.setup(cfg.run.gpus)
    failed = False
    previous_handler = None
    run: _Run | None = None
    result = TrainResult(run_dir=run_folder(cfg), epochs=0, steps=0)
    stop = {"interrupted": False}  # Ctrl-C sets it; the loop sees it between optimizer steps
    try:
        run = _setup(cfg, dist, model, train_set, val_set)
        result.epochs, result.steps, result.best_top1 = run.start_epoch, run.step, run.best_top1
        saver = _Saver(run)
        previous_handler = _install_sigint(stop)
        for epoch in range(run.start_epoch, run.plan.end_epoch):
            sums, stopped = _train_epoch(run, epoch, stop)
            if stopped and sums is None:  # stopped inside the epoch: a resumable mid-epoch checkpoint was saved
                result.stopped, result.epochs, result.steps = stopped, epoch, run.step
                return result
            result.stopped = stopped
            last = epoch + 1 == run.plan.end_epoch or stopped is not None
            validate = run.val_loader is not None and ((epoch + 1) % cfg.run.val_frequency == 0 or last)
            if validate or (epoch + 1) % cfg.run.save_frequency == 0 or last:
                _precise_bn(run, epoch, final=last)
            if validate:
                metrics = _validate(run, epoch)
                result.val = {k: metrics[k] for k in ("loss", "top1", "top5")}
                if improves_best(metrics["top1"], run.best_top1):
                    run.best_top1 = metrics["top1"]
                    saver.best(epoch + 1)
            if (epoch + 1) % cfg.run.save_frequency == 0 or last:
                saver.resumable(epoch + 1, 0)
            result.epochs, result.steps, result.best_top1 = epoch + 1, run.step, run.best_top1
            if stopped:
                return result
    except BaseException:
        failed = True
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler) if previous_handler is not None else None
        torch.set_num_threads(threads)
        if run is not None:
            run.sinks.close()
        result.wall_s = time.perf_counter() - t_start
        # On a normal end every process waits for the others (rank 0 may still be writing a checkpoint) before
        # the group is torn down: gloo aborts a process whose peer closes the connection under it. After an
        # error the others may never arrive, so no wait then.
        distributed.cleanup(wait=not failed)
    return result


# -- phase 1: setup ------------------------------------------------------------------------------------------


def _setup(cfg: TrainConfig, dist: Any, model: nn.Module | None, train_set: Dataset | None,
           val_set: Dataset | None) -> _Run:
    """Logging, data, model (pretrained weights, resume, pruned architecture), optimizer, loaders, sinks."""
    device = dist.device
    run_dir = run_folder(cfg)
    _setup_process(cfg, dist, run_dir)
    if model is None:  # an unknown name fails before any data is read
        from vidnet.network import UnknownModelError, model_info

        try:
            model_info(cfg.model.network)
        except UnknownModelError as err:
            raise UsageError(f"--network: {err}") from None

    # Data: one dataset per split; the training loader's batch sampler decides every batch's shape.
    pre = preprocessing_of(cfg)
    if train_set is None:
        train_set, val_set = _datasets(cfg, pre)
    labels = dict(getattr(train_set, "labels", {}))
    num_classes = int(getattr(train_set, "num_classes", len(labels)))

    # Model. A pruned model (fewer channels than its registry build) keeps its channel counts in every
    # checkpoint ("architecture"), so a resume or a --pretrained-3d of it rebuilds the same shapes.
    ckpt_dir = run_dir / ckpt_io.CHECKPOINT_DIR
    resume_path = _resume_path(cfg, ckpt_dir)
    resume_state = ckpt_io.load_training(resume_path) if resume_path is not None else None
    given_model = model is not None
    if model is None:
        from vidnet.network import create_model

        model = create_model(cfg.model.network, num_classes=num_classes)
    if cfg.model.pretrained_3d:
        _load_pretrained(model, cfg.model.pretrained_3d)
    if resume_state is not None:
        from vidnet.network.weights import apply_architecture

        apply_architecture(model, resume_state, str(resume_path))
    architecture = _pruned_architecture(model, cfg, num_classes, given=given_model)
    model.to(device)
    teacher = None
    if cfg.distill.teacher:
        multigrid_on = cfg.schedule.long_cycles or cfg.schedule.short_cycles
        teacher = load_teacher(cfg.distill.teacher, network=cfg.distill.teacher_network, labels=labels,
                               num_classes=num_classes, clip=(cfg.data.clip_length, *cfg.data.clip_size),
                               mean=pre.mean, std=pre.std, resize_always=multigrid_on, device=device)
    if cfg.model.channels_last:
        _channels_last_3d(model)
    plan = MultigridSchedule.create(
        batch=cfg.schedule.batch_size, frames=cfg.data.clip_length, size=cfg.data.clip_size,
        lr_steps=cfg.schedule.lr_steps, end_epoch=cfg.schedule.end_epoch,
        long_cycle=cfg.schedule.long_cycles, short_cycle=cfg.schedule.short_cycles,
        epoch_factor=cfg.schedule.epoch_factor, lr_scale_max=cfg.schedule.lr_scale_max,
        min_frames=cfg.schedule.long_cycle_min_frames,
    )
    multigrid = cfg.schedule.long_cycles or cfg.schedule.short_cycles
    model = _batch_norm_mode(model, cfg, dist, multigrid)
    check_shapes(model, plan.all_shapes(), world_size=dist.world_size, multigrid=multigrid)

    # Optimizer, gradient scaler (fp16 only), EMA, learning-rate function.
    optimizer = build_optimizer(model, cfg, num_classes=num_classes)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.run.precision == "fp16")
    ema = _make_ema(model, cfg.optim.ema)
    lr_fn = partial(lr_at, base_lr=cfg.optim.lr_base, schedule=cfg.schedule.lr_schedule, steps=plan.lr_steps,
                    factor=cfg.schedule.lr_factor, end_epoch=plan.end_epoch,
                    warmup_epochs=cfg.schedule.warmup_epochs, min_lr=cfg.schedule.min_lr)
    position = _restore(resume_state, resume_path, cfg, labels, model, optimizer, scaler, ema)

    # Wrappers (DDP for the gradient all-reduce, then torch.compile) and loaders.
    net: nn.Module = model
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.model.compile:
        net = torch.compile(net)
    batches, loader, val_loader = _loaders(cfg, dist, plan, train_set, val_set)
    sinks = Sinks([ConsoleSink(interval=cfg.run.log_interval), CSVSink(run_dir, start_epoch=position["start_epoch"]),
                   TensorBoardSink.create(run_dir / "tb", cfg.run.tensorboard)]
                  if dist.is_main else [])
    run = _Run(cfg=cfg, dist=dist, run_dir=run_dir, pre=pre, model=model, net=net, optimizer=optimizer,
               scaler=scaler, ema=ema, lr_fn=lr_fn, plan=plan, multigrid=multigrid, train_set=train_set,
               val_set=val_set, batches=batches, loader=loader, val_loader=val_loader, teacher=teacher,
               labels=labels, architecture=architecture,
               autocast=partial(torch.autocast, device.type, dtype=_DTYPES[cfg.run.precision],
                                enabled=cfg.run.precision != "fp32"),
               criterion=nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing), sinks=sinks, **position)
    run.planned_steps = _planned_steps(run)
    run.precise_bn = resolve_precise_bn(cfg.model.precise_bn, multigrid=multigrid, total_steps=run.planned_steps)
    if dist.is_main:
        _log_start(run)
    return run


def _planned_steps(run: _Run) -> int:
    """Optimizer steps of the whole run (multigrid batches differ per epoch), at most ``--max-steps``."""
    probe = copy.copy(run.batches)  # shapes() reads only the epoch, the sample count and the schedule
    batches = 0
    for epoch in range(run.plan.end_epoch):
        probe.epoch = epoch
        batches += len(probe)
    steps = -(-batches // run.cfg.optim.accumulate)
    return min(steps, run.cfg.run.max_steps) if run.cfg.run.max_steps is not None else steps


def _setup_process(cfg: TrainConfig, dist: Any, run_dir: Path) -> None:
    """Run folder, logging, config file, compute threads, seeds."""
    from vidnet._log import setup_logging

    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(1 if cfg.run.debug_mode else 0, cfg.run.log_file or str(run_dir / "train.log"))
        _write_config(cfg, run_dir)
    else:
        setup_logging(-1)
    torch.autograd.set_detect_anomaly(cfg.run.debug_mode)
    if dist.device.type == "cpu" and cfg.data.workers > 0:
        # Loader processes take cores: compute threads competing with them for the same cores spin-wait and
        # run several times slower (measured: 0.75 vs 3+ steps/s for the quickstart on 2 cores).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // dist.world_size - cfg.data.workers)
        if threads < torch.get_num_threads():
            torch.set_num_threads(threads)
    _seed_everything(cfg.run.random_seed)


def _load_pretrained(model: nn.Module, path: str) -> Any:
    """``--pretrained-3d``: every tensor whose name and shape fit, through the one weight door (original
    SRTG/MTNet/Hara/Efficient-3DCNN layouts remapped; a pruned file's channel counts applied); returns the
    `vidnet.network.weights.LoadReport`."""
    from vidnet.network.weights import load_weights

    with torch.random.fork_rng(devices=[]):
        report = load_weights(model, path)
    if not report.loaded:
        raise ckpt_io.CheckpointError(f"{path}: none of its weights match the model's names and shapes "
                                      f"({report.summary()})")
    log.info(f"pretrained weights from {path}: {report.summary()}")
    return report


def _batch_norm_mode(model: nn.Module, cfg: TrainConfig, dist: Any, multigrid: bool) -> nn.Module:
    """SyncBatchNorm and sub-batch BatchNorm as the options and multigrid ask."""
    # Multigrid's small per-GPU batches get batch statistics from every process (Wu et al. use SyncBN when the
    # per-GPU batch falls below 8); PyTorch's SyncBatchNorm runs on CUDA only.
    cuda = dist.device.type == "cuda"
    sync_bn = cfg.model.sync_bn if cfg.model.sync_bn is not None else (multigrid and dist.distributed and cuda)
    if sync_bn and not cuda:
        raise UsageError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm runs on CUDA only)")
    if sync_bn and dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Sub-batch BN: the multigrid batches (up to 32B) take their BatchNorm statistics over groups of B clips.
    sub_batch = resolve_sub_batch(cfg.model.bn_sub_batch, base_batch=cfg.schedule.batch_size, multigrid=multigrid,
                                  sync_bn=bool(sync_bn and dist.distributed))
    if sub_batch is not None:
        model = convert_sub_batch_norm(model, sub_batch)
    return model


def _restore(state: dict[str, Any] | None, path: Path | None, cfg: TrainConfig, labels: dict[str, int],
             model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             ema: Any) -> dict[str, Any]:
    """Resume: weights, optimizer, scaler, EMA, RNG states; returns the position."""
    position = {"start_epoch": 0, "start_iter": 0, "step": 0, "best_top1": None, "resumed_sums": None}
    if state is None:
        return position
    _check_compatible(state, cfg, labels, path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ckpt_io.CheckpointError(f"{path}: weights do not fit {cfg.model.network}: "
                                      f"{str(err).splitlines()[0]}") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, ValueError) as err:
        raise ckpt_io.CheckpointError(f"{path}: its optimizer state does not fit this run's optimizer "
                                      f"({type(err).__name__}: {err})") from None
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    sums = state.get("epoch_sums")
    position.update(start_epoch=state["epoch"], start_iter=state["iteration"], step=state["step"],
                    best_top1=state.get("best_top1"), resumed_sums=None if sums is None else np.array(sums))
    ckpt_io.set_rng_state(state["rng"])
    log.info(f"resumed from {path}: epoch {state['epoch']}, iteration {state['iteration']}, step {state['step']}")
    return position


def _loaders(cfg: TrainConfig, dist: Any, plan: MultigridSchedule, train_set: Dataset,
             val_set: Dataset | None) -> tuple[MultigridBatchSampler, DataLoader, DataLoader | None]:
    """The training loader (its batch sampler emits (index, T, H, W) keys of the scheduled shape) and the
    validation loader (every clip once over all processes)."""
    device = dist.device
    shard: Sampler[int] | None = None
    if dist.distributed:
        shard = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                   seed=cfg.run.random_seed)
    batches = MultigridBatchSampler(len(train_set), plan.shape, sampler=shard, seed=cfg.run.random_seed)
    workers = cfg.data.workers
    # Own generators: creating a loader iterator draws a seed, which must not move the global RNG that dropout
    # uses (a resumed run creates its iterators at other points of that stream than an uninterrupted one).
    loader = DataLoader(train_set, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(cfg.run.random_seed))
    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(val_set, batch_size=cfg.schedule.batch_size, num_workers=workers,
                                sampler=_RankShard(len(val_set), dist.rank, dist.world_size),
                                pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                generator=torch.Generator().manual_seed(cfg.run.random_seed))
    return batches, loader, val_loader


def _log_start(run: _Run) -> None:
    cfg = run.cfg
    if run.teacher is not None:
        log.info(f"distilling from {cfg.distill.teacher} ({run.teacher.describe()}): alpha "
                 f"{cfg.distill.distill_alpha}, temperature {cfg.distill.distill_temperature}")
    log.info(f"training {cfg.model.network} ({sum(p.numel() for p in run.model.parameters()) / 1e6:.2f} M params) "
             f"on {len(run.train_set)} clips, {run.dist.world_size} process(es) on {run.device}, "
             f"{cfg.run.precision}; run folder {run.run_dir}")
    for line in run.plan.table() if run.multigrid else []:
        log.info(f"multigrid {line}")
    if run.precise_bn:
        log.info(f"precise BN: BatchNorm statistics recomputed over up to {run.precise_bn} training batches (at most "
                 f"an epoch's) before each validation and checkpoint (--precise-bn {cfg.model.precise_bn})")


# -- phase 2: the steps of one epoch -------------------------------------------------------------------------


def _train_epoch(run: _Run, epoch: int, stop: dict[str, bool]) -> tuple[np.ndarray | None, str | None]:
    """One epoch of optimizer steps from the resumed iteration on.

    Returns:
        ``(sums, stopped)``: the epoch's (loss * n, top-1 hits, top-5 hits, n) summed over processes with
        ``stopped`` None or why the run stops after this complete epoch; or ``(None, why)`` when it stopped
        inside the epoch (a resumable checkpoint of that position was saved).
    """
    cfg, dist, device = run.cfg, run.dist, run.device
    first = run.start_iter if epoch == run.start_epoch else 0
    run.batches.set_epoch(epoch, first)
    if hasattr(run.train_set, "set_epoch"):
        run.train_set.set_epoch(epoch)
    iterations = len(run.batches)
    run.net.train()
    sums = np.zeros(4)  # loss * n, correct top1, correct top5, n
    if first and run.resumed_sums is not None:
        sums += run.resumed_sums
    epoch_t0 = time.perf_counter()
    lr = 0.0
    bad_losses = 0
    stopped = None
    t_read = time.perf_counter()
    it = first - 1
    for it, batch in enumerate(run.loader, start=first):
        read_s = time.perf_counter() - t_read
        shape = run.plan.shape(epoch, it)
        lr = run.lr = run.lr_fn(epoch + it / max(iterations, 1)) * shape.lr_scale
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        timed = dist.is_main and it % cfg.run.log_interval == 0  # synchronise only on logged steps
        boundary = (it + 1) % cfg.optim.accumulate == 0 or it + 1 == iterations

        t0 = time.perf_counter()
        x, y = _to_device(batch, device, cfg.model.channels_last, run.pre)
        logits, loss, finite, (t1, t2) = _forward_backward(run, x, y, shape, boundary, timed)

        # Non-finite loss: skip the step; stop after --nan-patience in a row.
        if not finite:
            bad_losses += 1
            run.optimizer.zero_grad(set_to_none=True)
            log.warning(f"non-finite loss at epoch {epoch} iteration {it} (lr {lr:.2e}); step skipped "
                        f"({bad_losses}/{cfg.run.nan_patience})")
            if bad_losses >= cfg.run.nan_patience:
                raise VidnetError(f"loss was not finite {bad_losses} times in a row (last at epoch {epoch}, "
                                  f"iteration {it}, lr {lr:.3g}): lower --lr-base, add --clip-grad or "
                                  "use --precision bf16/fp32")
            t_read = time.perf_counter()
            continue
        bad_losses = 0
        if boundary:
            _optimizer_step(run)

        # Metrics (numbers only; the sinks format them).
        n = y.shape[0]
        c1, c5 = _correct(logits.detach(), y)
        sums += (float(loss.detach()) * n, c1, c5, n)
        record = {"epoch": epoch, "iteration": it, "iterations": iterations, "steps": run.step,
                  "loss": float(loss.detach()), "top1": c1 / n, "top5": c5 / n, "lr": lr, "batch": n,
                  "frames": x.shape[2], "height": x.shape[3], "width": x.shape[4], "last": it + 1 == iterations}
        if timed:
            record.update(read=n / max(read_s, 1e-9), forward=n / max(t1 - t0, 1e-9),
                          backward=n / max(t2 - t1, 1e-9), data_s=read_s, step_s=t2 - t0)
        run.sinks.step(record)

        # Early stops happen only at optimizer-step boundaries, so the saved state is consistent.
        if boundary:
            flags = [float(stop["interrupted"]), float(cfg.run.max_steps is not None and run.step >= cfg.run.max_steps)]
            if dist.distributed:
                flags = distributed.all_reduce_sum(flags, device)
            if any(flags):
                stopped = "interrupted" if flags[0] else "max_steps"
                if it + 1 == iterations:  # the epoch is complete: validate and save it as usual
                    break
                _Saver(run).resumable(epoch, it + 1, sums=sums)
                return None, stopped
        t_read = time.perf_counter()

    if it < first:
        need = run.plan.shape(epoch, 0).batch
        raise UsageError(f"epoch {epoch} has no full batch: {len(run.train_set)} clips over {dist.world_size} "
                         f"process(es), and its first batch takes {need} per process (--batch-size "
                         f"{cfg.schedule.batch_size}" + (", times the multigrid factor)" if run.multigrid else ")"))
    # The speed counts the clips of this session only: a resumed epoch's earlier clips took another session's time.
    here = sums[3] - (run.resumed_sums[3] if first and run.resumed_sums is not None else 0.0)
    loss_sum, c1, c5, n, n_here = distributed.all_reduce_sum([*sums.tolist(), here], device)
    elapsed = time.perf_counter() - epoch_t0
    run.sinks.epoch("train", {"epoch": epoch, "loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "lr": lr,
                              "clips_per_s": n_here / elapsed, "time": elapsed})
    return sums, stopped


def _forward_backward(run: _Run, x: torch.Tensor, y: torch.Tensor, shape: Any, boundary: bool,
                      timed: bool) -> tuple[torch.Tensor, torch.Tensor, bool, tuple[float, float]]:
    """Forward (with the teacher's soft targets when distilling) and backward of one batch under autocast;
    gradients are all-reduced only at accumulation boundaries. Returns logits, loss, whether the loss was
    finite on every process, and the times after the forward and after the backward."""
    cfg, device = run.cfg, run.device
    sync_ctx = run.net.no_sync() if run.dist.distributed and not boundary else contextlib.nullcontext()
    with sync_ctx, _oom_message(shape):
        with run.autocast():
            logits = run.net(x)
            if run.teacher is None:
                loss = run.criterion(logits.float(), y)
            else:
                soft = run.teacher(x)  # no graph: the teacher runs under no_grad
                loss = distillation_loss(logits.float(), soft.float(), y, cfg.distill.distill_alpha,
                                         cfg.distill.distill_temperature, label_smoothing=cfg.optim.label_smoothing)
        if timed:
            _synchronize(device)
        t1 = time.perf_counter()
        finite = bool(torch.isfinite(loss))
        if run.dist.distributed:  # every rank must skip the same steps or DDP deadlocks
            finite = distributed.all_reduce_sum([float(not finite)], device)[0] == 0
        if finite:
            run.scaler.scale(loss / cfg.optim.accumulate).backward()
        if timed:
            _synchronize(device)
        t2 = time.perf_counter()
    return logits, loss, finite, (t1, t2)


def _optimizer_step(run: _Run) -> None:
    """Clip, step, update the scaler and the EMA, count the step (end of an accumulation window)."""
    if run.cfg.optim.clip_grad:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    if run.ema is not None:
        run.ema.update_parameters(run.model)


# -- phase 3: validation and saving --------------------------------------------------------------------------


def _precise_bn(run: _Run, epoch: int, *, final: bool) -> None:
    """Precise BN before validating and saving: the BatchNorm statistics of the validated model recomputed over
    ``run.precise_bn`` training batches of the base shape (what validation sees), averaged over processes; or,
    when it is off in a short run (or at the end of a run stopped early), a note that the statistics are stale."""
    target = run.ema.module if run.ema is not None else run.model
    if not bn_layers(target):
        return
    if run.precise_bn == 0:
        short = run.planned_steps < SHORT_RUN_STEPS or final
        if short and run.step < SHORT_RUN_STEPS and run.dist.is_main:
            log.warning(f"BatchNorm statistics are stale after {run.step} optimizer steps (their running averages "
                        "lag the weights): validation may give every clip the same class; --precise-bn 200 "
                        "recomputes them")
        return
    t0 = time.perf_counter()
    base, shape_at = run.plan.base, run.batches.shape_at
    run.batches.shape_at = lambda e, i: base  # the loader's batch sampler runs in this process: one shape for now
    run.batches.set_epoch(epoch)
    try:
        batches = (_to_device(b, run.device, run.cfg.model.channels_last, run.pre)[0] for b in run.loader)
        with run.autocast():
            used = update_bn_stats(target, batches, min(run.precise_bn, len(run.batches)))
    finally:
        run.batches.shape_at = shape_at
    distributed.all_reduce_mean_([t for m in bn_layers(target) for t in (m.running_mean, m.running_var)])
    log.info(f"precise BN: statistics of {len(bn_layers(target))} BatchNorm layers over {used} batches of "
             f"{base.batch} x {base.frames} x {base.height}x{base.width} ({time.perf_counter() - t0:.1f} s)")


def _validate(run: _Run, epoch: int) -> dict[str, float]:
    t0 = time.perf_counter()
    if hasattr(run.val_set, "set_epoch"):
        run.val_set.set_epoch(0)  # validation clips are the same every epoch
    metrics = evaluate(run.ema.module if run.ema is not None else run.net, run.val_loader, device=run.device,
                       autocast=run.autocast, channels_last=run.cfg.model.channels_last, pre=run.pre)
    metrics.update(epoch=epoch, lr=run.lr, time=time.perf_counter() - t0)
    metrics["clips_per_s"] = metrics["n"] / max(metrics["time"], 1e-9)
    run.sinks.epoch("val", metrics)
    return metrics


class _Saver:
    """Writes the run's checkpoints (rank 0 only): resumable ``ep-*.pth`` files, of which the ``--keep-last``
    most recent stay, and ``best.pth``, the validated weights without the optimizer."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.folder = run.run_dir / ckpt_io.CHECKPOINT_DIR

    def _common(self, weights: nn.Module) -> dict[str, Any]:
        run = self.run
        return {"model": ckpt_io.unwrap(weights).state_dict(), "network": run.cfg.model.network,
                "labels": dict(run.labels), "preprocessing": run.pre.to_record(), "config": run.cfg.to_dict(),
                **({"architecture": run.architecture} if run.architecture is not None else {})}

    def resumable(self, epoch: int, iteration: int, *, sums: Any = None) -> None:
        run = self.run
        if not run.dist.is_main:
            return
        state = {**self._common(run.model), "optimizer": run.optimizer.state_dict(),
                 "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
                 "ema": run.ema.state_dict() if run.ema is not None else None,
                 "epoch": epoch, "iteration": iteration, "step": run.step, "best_top1": run.best_top1,
                 "rng": ckpt_io.rng_state(),
                 # a resumed epoch's metrics cover all of it
                 "epoch_sums": None if sums is None else [float(v) for v in sums]}
        path = ckpt_io.save_training(self.folder / ckpt_io.checkpoint_name(epoch, iteration), state)
        log.info(f"saved {path}")
        for old, beyond in ckpt_io.prune_checkpoints(self.folder, run.cfg.run.keep_last, path):
            if beyond:
                log.warning(f"removed {old}: it continued past {path.name} in an earlier run, which this run "
                            "replaces (--keep-last 0 keeps every checkpoint)")
            else:
                log.debug(f"removed {old} (--keep-last {run.cfg.run.keep_last})")

    def best(self, epoch: int) -> None:
        run = self.run
        if not run.dist.is_main:
            return
        validated = run.ema.module if run.ema is not None else run.model
        common = self._common(validated)
        path = ckpt_io.save_model(self.folder / ckpt_io.BEST_NAME, epoch=epoch, step=run.step,
                                  best_top1=run.best_top1, **common)
        log.info(f"saved {path}")


# -- helpers -------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    net: nn.Module, loader: DataLoader, *, device: torch.device, autocast: Any = None, channels_last: bool = False,
    pre: Preprocessing | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 (fractions) of ``net`` over ``loader`` and the confusion matrix (``confusion``,
    rows = true class), summed over every process.

    Every clip counts once (the mean over clips, not the original's mean of running means). Clips are
    normalised with ``pre``'s mean/std (Kinetics' when None).
    """
    was_training = net.training
    net.eval()
    sums = np.zeros(4)
    cm: np.ndarray | None = None
    for batch in loader:
        x, y = _to_device(batch, device, channels_last, pre)
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = net(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        c1, c5 = _correct(logits, y)
        sums += (float(loss), c1, c5, y.shape[0])
        k = logits.shape[1]
        cm = np.zeros((k, k)) if cm is None else cm
        np.add.at(cm, (y.cpu().numpy(), logits.argmax(1).cpu().numpy()), 1)
    net.train(was_training)
    loss_sum, c1, c5, n = distributed.all_reduce_sum(sums.tolist(), device)
    # A process without validation clips has no matrix yet: agree on the class count first.
    k_sum, holders = distributed.all_reduce_sum([float(len(cm)) if cm is not None else 0.0, float(cm is not None)],
                                                device)
    if holders:
        k = round(k_sum / holders)
        cm = np.zeros((k, k)) if cm is None else cm
        cm = np.asarray(distributed.all_reduce_sum(cm.ravel().tolist(), device)).reshape(k, k).astype(np.int64)
    n = max(n, 1)
    return {"loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "n": n, "confusion": cm}


def build_optimizer(model: nn.Module, cfg: TrainConfig, *, num_classes: int) -> torch.optim.Optimizer:
    """SGD or AdamW with weight decay off for norms and biases (unless --decay-norm-bias) and, with
    --fine-tune, the classifier at the full learning rate and the rest at 0.6 of it.

    Each param group carries ``lr_mult``; the loop sets ``lr = lr_at(...) * lr_mult`` every step.
    """
    o = cfg.optim
    head = _classifier_params(model, num_classes) if cfg.model.fine_tune else set()
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        decay = o.decay_norm_bias or p.ndim > 1  # 1-D tensors are norm scales/shifts and biases
        mult = 1.0 if (not cfg.model.fine_tune or id(p) in head) else 0.6
        groups.setdefault((decay, mult), []).append(p)
    params = [{"params": ps, "weight_decay": o.weight_decay if decay else 0.0, "lr_mult": mult}
              for (decay, mult), ps in groups.items()]
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr_base, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
    return torch.optim.AdamW(params, lr=o.lr_base)


# -- helpers ---------------------------------------------------------------------------------------------


def _datasets(cfg: TrainConfig, pre: Preprocessing) -> tuple[Dataset, Dataset | None]:
    from vidnet.data.dataset import VideoClipDataset
    from vidnet.data.sampling import CentreClip, RandomClip, parse_interval

    d = cfg.data
    interval = parse_interval(d.train_frame_interval)
    sampler: Any = RandomClip(interval=tuple(interval) if isinstance(interval, range) else interval)
    if cfg.schedule.long_cycles:
        from vidnet.train.multigrid import SpanKeepingClip

        sampler = SpanKeepingClip(sampler, base_frames=d.clip_length)
    common = dict(num_frames=d.clip_length, size=d.clip_size, seed=cfg.run.random_seed, bad_data=d.bad_data,
                  max_bad_fraction=d.max_bad_fraction)
    train_set = VideoClipDataset(d.dataset, d.split, sampler=sampler, transform=pre.train_transform(), **common)
    val_set = None
    if d.val_split:
        val_set = VideoClipDataset(d.dataset, d.val_split, sampler=CentreClip(interval=d.val_frame_interval),
                                   transform=pre.eval_transform(), **common)
    return train_set, val_set


def _write_config(cfg: TrainConfig, run_dir: Path) -> None:
    import yaml

    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resume_path(cfg: TrainConfig, ckpt_dir: Path) -> Path | None:
    r = cfg.run
    if r.resume_epoch is not None:
        path = ckpt_dir / ckpt_io.checkpoint_name(r.resume_epoch)
        if not path.is_file():
            have = ", ".join(p.name for *_, p in ckpt_io.find_checkpoints(ckpt_dir)) or "none"
            raise ckpt_io.CheckpointError(f"{path}: no checkpoint for --resume-epoch {r.resume_epoch} (found: {have})")
        return path
    if r.resume == "auto":
        path = ckpt_io.latest_checkpoint(ckpt_dir)
        if path is None:
            log.info(f"--resume auto: no checkpoint in {ckpt_dir}; starting from scratch")
        return path
    return Path(r.resume) if r.resume else None


def _check_compatible(state: dict[str, Any], cfg: TrainConfig, labels: dict[str, int], path: Path) -> None:
    if state.get("network") != cfg.model.network:
        raise ckpt_io.CheckpointError(f"{path}: checkpoint of {state.get('network')!r}, not --network "
                                      f"{cfg.model.network}")
    if labels and state.get("labels") and state["labels"] != labels:
        raise ckpt_io.CheckpointError(f"{path}: the checkpoint's label map differs from {cfg.data.dataset}'s")
    saved = (state.get("config") or {}).get("optim", {}).get("optimizer")
    if saved is not None and saved != cfg.optim.optimizer:
        raise ckpt_io.CheckpointError(f"{path}: the run was trained with --optimizer {saved}, not "
                                      f"{cfg.optim.optimizer}: its optimizer state cannot continue (start a new run "
                                      "with another --model-dir)")


def _pruned_architecture(model: nn.Module, cfg: TrainConfig, num_classes: int, *, given: bool) -> dict | None:
    """The model's channel counts when they differ from the registry build of ``--network`` (a pruned model,
    given directly or rebuilt from a checkpoint's ``architecture``), else None: what checkpoints must carry."""
    from vidnet.network.compress import channel_spec

    pretrained_arch = cfg.model.pretrained_3d is not None  # load_pretrained may have resized the model
    if not (given or pretrained_arch):
        return None
    from vidnet.network import create_model

    try:
        with torch.random.fork_rng(devices=[]):  # building the reference must not move the run's RNG streams
            reference = create_model(cfg.model.network, num_classes=num_classes)
    except Exception:  # a given model under an unregistered name: it cannot be rebuilt by name anyway
        return None
    spec = channel_spec(model)
    return spec if spec != channel_spec(reference) else None


def _make_ema(model: nn.Module, decay: float | None) -> Any:
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _classifier_params(model: nn.Module, num_classes: int) -> set[int]:
    """Ids of the parameters of the last layer producing ``num_classes`` outputs."""
    last = None
    for module in model.modules():
        out = getattr(module, "out_features", getattr(module, "out_channels", None))
        if out == num_classes and any(True for _ in module.parameters(recurse=False)):
            last = module
    return {id(p) for p in last.parameters()} if last is not None else set()


def _channels_last_3d(model: nn.Module) -> None:
    # Only 5-D weights have a channels-last-3d layout; 2-D layers inside video models keep theirs.
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool,
               pre: Preprocessing | None) -> tuple[torch.Tensor, torch.Tensor]:
    clips = batch["clip"].to(device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
    x = normalize(clips, *((pre.mean, pre.std) if pre is not None else (KINETICS_MEAN, KINETICS_STD)))
    if channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, labels


def _correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(y[:, None])
    return float(hit[:, 0].sum()), float(hit.any(dim=1).sum())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _oom_message(shape: Any):
    try:
        yield
    except torch.cuda.OutOfMemoryError:  # also raised for other accelerators in recent PyTorch
        raise VidnetError(
            f"out of memory at batch {shape.batch} x {shape.frames} frames x {shape.height}x{shape.width}: use a "
            "smaller --batch-size (with --accumulate to keep the effective batch), a shorter --clip-length or a "
            "smaller --clip-size" + (" (multigrid multiplies the base batch up to x32 at small shapes)"
                                     if shape.batch > 1 else "")) from None


class _RankShard(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every validation clip is evaluated exactly once over all ranks."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _install_sigint(stop: dict[str, bool]) -> Any:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):  # noqa: ARG001 - signal signature
        if stop["interrupted"]:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        stop["interrupted"] = True
        log.warning("interrupted: saving a checkpoint after this step (Ctrl-C again to stop now)")

    return signal.signal(signal.SIGINT, handler)
