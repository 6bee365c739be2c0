"""The training loop of ``vidnet train``, meant to be read top to bottom.

`train` sets up (process group, data, model, optimizer, schedule, resume), then runs epochs of steps. The
learning rate and the mini-batch shape come from pure functions of the position (`vidnet.train.schedules`);
mixed precision is one ``torch.autocast`` context plus a ``GradScaler`` that is only enabled for fp16; only
rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
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

from vidnet._io import atomic_write_text
from vidnet._log import get_logger
from vidnet.errors import UsageError, VidnetError
from vidnet.network.compress import distillation_loss
from vidnet.train import checkpoint as ckpt_io
from vidnet.train import distributed
from vidnet.train.config import TrainConfig
from vidnet.train.hooks import ConsoleSink, CSVSink, Sinks, TensorBoardSink
from vidnet.train.multigrid import MultigridBatchSampler
from vidnet.train.schedules import MultigridSchedule, lr_at
from vidnet.train.sub_batch_norm import convert_sub_batch_norm, resolve_sub_batch

__all__ = ["train", "TrainResult", "build_optimizer", "run_folder", "evaluate", "augment_transforms", "MEAN", "STD"]

log = get_logger(__name__)

# Kinetics statistics (torchvision's video models), RGB, for pixels in [0, 1]; saved in every checkpoint.
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
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
    best_top1: float = 0.0
    wall_s: float = 0.0
    stopped: str | None = None
    """Why the run stopped before the end (``max_steps``, ``interrupted``), or None."""


def run_folder(cfg: TrainConfig) -> Path:
    """``<model-dir>/<dataset folder name>/<network>``: checkpoints, CSV files, config and log of a run."""
    name = Path(cfg.data.dataset).resolve().name or "dataset"
    return Path(cfg.run.model_dir) / name / cfg.model.network


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
            out of memory, a missing or mismatched checkpoint.
    """
    t_start = time.perf_counter()
    dist = distributed.setup(cfg.run.gpus)
    device = dist.device
    run_dir = run_folder(cfg)
    ckpt_dir = run_dir / "checkpoints"
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from vidnet._log import setup_logging

        setup_logging(1 if cfg.run.debug_mode else 0, cfg.run.log_file or str(run_dir / "train.log"))
        _write_config(cfg, run_dir)
    else:
        from vidnet._log import setup_logging

        setup_logging(-1)
    torch.autograd.set_detect_anomaly(cfg.run.debug_mode)
    if device.type == "cpu" and cfg.data.workers > 0:
        # Loader processes take cores: compute threads competing with them for the same cores spin-wait and
        # run several times slower (measured: 0.75 vs 3+ steps/s for the quickstart on 2 cores).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // dist.world_size - cfg.data.workers)
        if threads < torch.get_num_threads():
            torch.set_num_threads(threads)
    _seed_everything(cfg.run.random_seed)

    if model is None:  # an unknown name fails before any data is read
        from vidnet.network import UnknownModelError, model_info

        try:
            model_info(cfg.model.network)
        except UnknownModelError as err:
            raise UsageError(f"--network: {err}") from None

    # Data: one dataset per split; the training loader's batch sampler decides every batch's shape.
    if train_set is None:
        train_set, val_set = _datasets(cfg)
    labels = dict(getattr(train_set, "labels", {}))
    num_classes = int(getattr(train_set, "num_classes", len(labels)))

    # Model. A pruned model (fewer channels than its registry build) keeps its channel counts in every
    # checkpoint ("architecture"), so a resume or a --pretrained-3d of it rebuilds the same shapes.
    resume_path = _resume_path(cfg, ckpt_dir)
    resume_state = ckpt_io.load_checkpoint(resume_path) if resume_path is not None else None
    given_model = model is not None
    if model is None:
        from vidnet.network import create_model

        model = create_model(cfg.model.network, num_classes=num_classes)
    if cfg.model.pretrained_3d:
        missing, skipped = ckpt_io.load_pretrained(model, cfg.model.pretrained_3d)
        log.info(f"pretrained weights from {cfg.model.pretrained_3d}: {len(missing)} model weights left as "
                 f"initialised{': ' + ', '.join(missing[:6]) if missing else ''}; {len(skipped)} skipped")
    if resume_state is not None:
        ckpt_io.apply_architecture(model, resume_state, resume_path)
    architecture = _pruned_architecture(model, cfg, num_classes, given=given_model)
    model.to(device)
    teacher = _load_teacher(cfg, labels, num_classes, device) if cfg.distill.teacher else None
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
    # Multigrid's small per-GPU batches get batch statistics from every process (Wu et al. use SyncBN when the
    # per-GPU batch falls below 8); PyTorch's SyncBatchNorm runs on CUDA only.
    cuda = device.type == "cuda"
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

    # Optimizer, gradient scaler (fp16 only), EMA, learning-rate function.
    optimizer = build_optimizer(model, cfg, num_classes=num_classes)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.run.precision == "fp16")
    ema = _make_ema(model, cfg.optim.ema)
    lr_fn = partial(lr_at, base_lr=cfg.optim.lr_base, schedule=cfg.schedule.lr_schedule, steps=plan.lr_steps,
                    factor=cfg.schedule.lr_factor, end_epoch=plan.end_epoch,
                    warmup_epochs=cfg.schedule.warmup_epochs, min_lr=cfg.schedule.min_lr)

    # Resume: weights, optimizer, scaler, EMA, RNG states and the position.
    start_epoch, start_iter, step, best_top1, resumed_sums = 0, 0, 0, 0.0, None
    if resume_state is not None:
        state = resume_state
        _check_compatible(state, cfg, labels, resume_path)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ckpt_io.CheckpointError(f"{resume_path}: weights do not fit {cfg.model.network}: "
                                          f"{str(err).splitlines()[0]}") from None
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, start_iter, step = state["epoch"], state["iteration"], state["step"]
        best_top1 = state.get("best_top1", 0.0)
        resumed_sums = state.get("epoch_sums")
        ckpt_io.set_rng_state(state["rng"])
        log.info(f"resumed from {resume_path}: epoch {start_epoch}, iteration {start_iter}, step {step}")

    # Wrappers: DDP (gradient all-reduce), then torch.compile.
    net: nn.Module = model
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.model.compile:
        net = torch.compile(net)

    # Loaders: one for training whose batch sampler emits (index, T, H, W) keys of the scheduled shape.
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

    autocast = partial(torch.autocast, device.type, dtype=_DTYPES[cfg.run.precision],
                       enabled=cfg.run.precision != "fp32")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    sinks = Sinks([ConsoleSink(interval=cfg.run.log_interval), CSVSink(run_dir, start_epoch=start_epoch),
                   TensorBoardSink.maybe(run_dir / "tb") if cfg.run.tensorboard else None]
                  if dist.is_main else [])
    if dist.is_main:
        if teacher is not None:
            log.info(f"distilling from {cfg.distill.teacher} ({teacher.describe()}): alpha "
                     f"{cfg.distill.distill_alpha}, temperature {cfg.distill.distill_temperature}")
        log.info(f"training {cfg.model.network} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params) "
                 f"on {len(train_set)} clips, {dist.world_size} process(es) on {device}, {cfg.run.precision}; "
                 f"run folder {run_dir}")
        for line in plan.table() if multigrid else []:
            log.info(f"multigrid {line}")

    def save(epoch: int, iteration: int, *, name: str | None = None, sums: Any = None) -> None:
        if not dist.is_main:
            return
        state = {
            "model": ckpt_io.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch, "iteration": iteration, "step": step, "best_top1": best_top1,
            "rng": ckpt_io.rng_state(), "config": cfg.to_dict(), "network": cfg.model.network,
            "labels": labels, "preprocessing": _preprocessing(cfg),
            **({"architecture": architecture} if architecture is not None else {}),
            "epoch_sums": None if sums is None else list(sums),  # a resumed epoch's metrics cover all of it
        }
        path = ckpt_io.save_checkpoint(ckpt_dir / (name or ckpt_io.checkpoint_name(epoch, iteration)), state)
        log.info(f"saved {path}")

    # Ctrl-C sets a flag that the loop sees between optimizer steps: the checkpoint is then consistent.
    stop = {"interrupted": False}
    previous_handler = _install_sigint(stop)
    result = TrainResult(run_dir=run_dir, epochs=start_epoch, steps=step, best_top1=best_top1)
    accumulate = cfg.optim.accumulate
    bad_losses = 0
    failed = False
    try:
        for epoch in range(start_epoch, plan.end_epoch):
            first = start_iter if epoch == start_epoch else 0
            batches.set_epoch(epoch, first)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            iterations = len(batches)
            net.train()
            sums = np.zeros(4)  # loss * n, correct top1, correct top5, n
            if first and resumed_sums is not None:
                sums += resumed_sums
            epoch_t0 = time.perf_counter()
            lr = 0.0
            t_read = time.perf_counter()
            it = first - 1
            for it, batch in enumerate(loader, start=first):
                read_s = time.perf_counter() - t_read
                shape = plan.shape(epoch, it)
                lr = lr_fn(epoch + it / max(iterations, 1)) * shape.lr_scale
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_mult", 1.0)
                timed = dist.is_main and it % cfg.run.log_interval == 0  # synchronise only on logged steps

                # Forward: host-to-device copy, normalisation and loss under one autocast context.
                t0 = time.perf_counter()
                x, y = _to_device(batch, device, cfg.model.channels_last)
                boundary = (it + 1) % accumulate == 0 or it + 1 == iterations
                sync_ctx = net.no_sync() if dist.distributed and not boundary else contextlib.nullcontext()
                with sync_ctx, _oom_message(shape):
                    with autocast():
                        logits = net(x)
                        if teacher is None:
                            loss = criterion(logits.float(), y)
                        else:
                            soft = teacher(x)  # no graph: the teacher runs under no_grad
                            loss = distillation_loss(logits.float(), soft.float(), y, cfg.distill.distill_alpha,
                                                     cfg.distill.distill_temperature,
                                                     label_smoothing=cfg.optim.label_smoothing)
                    if timed:
                        _synchronize(device)
                    t1 = time.perf_counter()
                    finite = bool(torch.isfinite(loss))
                    if dist.distributed:  # every rank must skip the same steps or DDP deadlocks
                        finite = distributed.all_reduce_sum([float(not finite)], device)[0] == 0
                    if finite:
                        scaler.scale(loss / accumulate).backward()
                    if timed:
                        _synchronize(device)
                    t2 = time.perf_counter()

                # Non-finite loss: skip the step; stop after --nan-patience in a row.
                if not finite:
                    bad_losses += 1
                    optimizer.zero_grad(set_to_none=True)
                    log.warning(f"non-finite loss at epoch {epoch} iteration {it} (lr {lr:.2e}); step skipped "
                                f"({bad_losses}/{cfg.run.nan_patience})")
                    if bad_losses >= cfg.run.nan_patience:
                        raise VidnetError(f"loss was not finite {bad_losses} times in a row (last at epoch {epoch}, "
                                          f"iteration {it}, lr {lr:.3g}): lower --lr-base, add --clip-grad or "
                                          "use --precision bf16/fp32")
                    t_read = time.perf_counter()
                    continue
                bad_losses = 0

                # Optimizer step at the end of each accumulation window.
                if boundary:
                    if cfg.optim.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    if ema is not None:
                        ema.update_parameters(model)

                # Metrics (numbers only; the sinks format them).
                n = y.shape[0]
                c1, c5 = _correct(logits.detach(), y)
                sums += (float(loss.detach()) * n, c1, c5, n)
                record = {"epoch": epoch, "iteration": it, "iterations": iterations, "steps": step,
                          "loss": float(loss.detach()), "top1": c1 / n, "top5": c5 / n, "lr": lr, "batch": n,
                          "frames": x.shape[2], "height": x.shape[3], "width": x.shape[4],
                          "last": it + 1 == iterations}
                if timed:
                    record.update(read=n / max(read_s, 1e-9), forward=n / max(t1 - t0, 1e-9),
                                  backward=n / max(t2 - t1, 1e-9))
                sinks.step(record)

                # Early stops happen only at optimizer-step boundaries, so the saved state is consistent.
                if boundary:
                    flags = [float(stop["interrupted"]), float(cfg.run.max_steps is not None
                                                               and step >= cfg.run.max_steps)]
                    if dist.distributed:
                        flags = distributed.all_reduce_sum(flags, device)
                    if any(flags):
                        result.stopped = "interrupted" if flags[0] else "max_steps"
                        if it + 1 == iterations:  # the epoch is complete: validate and save it as usual
                            break
                        save(epoch, it + 1, sums=sums)
                        result.epochs, result.steps = epoch, step
                        return result
                t_read = time.perf_counter()

            # End of epoch: train summary, validation, checkpoints.
            if it < first:
                need = plan.shape(epoch, 0).batch
                raise UsageError(f"epoch {epoch} has no full batch: {len(train_set)} clips over {dist.world_size} "
                                 f"process(es), and its first batch takes {need} per process (--batch-size "
                                 f"{cfg.schedule.batch_size}" + (", times the multigrid factor)" if multigrid else ")"))
            loss_sum, c1, c5, n = distributed.all_reduce_sum(sums.tolist(), device)
            elapsed = time.perf_counter() - epoch_t0
            sinks.epoch("train", {"epoch": epoch, "loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "lr": lr,
                                  "clips_per_s": n / elapsed, "time": elapsed})
            last = epoch + 1 == plan.end_epoch or result.stopped is not None
            if val_loader is not None and ((epoch + 1) % cfg.run.val_frequency == 0 or last):
                t0 = time.perf_counter()
                if hasattr(val_set, "set_epoch"):
                    val_set.set_epoch(0)  # validation clips are the same every epoch
                metrics = evaluate(ema.module if ema is not None else net, val_loader, device=device,
                                   autocast=autocast, channels_last=cfg.model.channels_last)
                metrics.update(epoch=epoch, lr=lr, time=time.perf_counter() - t0)
                metrics["clips_per_s"] = metrics["n"] / max(metrics["time"], 1e-9)
                sinks.epoch("val", metrics)
                result.val = {k: metrics[k] for k in ("loss", "top1", "top5")}
                if metrics["top1"] > best_top1:
                    best_top1 = metrics["top1"]
                    save(epoch + 1, 0, name="best.pth")
            if (epoch + 1) % cfg.run.save_frequency == 0 or last:
                save(epoch + 1, 0)
            result.epochs, result.steps, result.best_top1 = epoch + 1, step, best_top1
            if result.stopped:
                return result
    except BaseException:
        failed = True
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler) if previous_handler is not None else None
        sinks.close()
        result.wall_s = time.perf_counter() - t_start
        # On a normal end every process waits for the others (rank 0 may still be writing a checkpoint) before
        # the group is torn down: gloo aborts a process whose peer closes the connection under it. After an
        # error the others may never arrive, so no wait then.
        distributed.cleanup(wait=not failed)
    return result


@torch.no_grad()
def evaluate(
    net: nn.Module, loader: DataLoader, *, device: torch.device, autocast: Any = None, channels_last: bool = False
) -> dict[str, float]:
    """Loss, top-1 and top-5 (fractions) of ``net`` over ``loader``, summed over every process.

    Every clip counts once (the mean over clips, not the original's mean of running means).
    """
    was_training = net.training
    net.eval()
    sums = np.zeros(4)
    for batch in loader:
        x, y = _to_device(batch, device, channels_last)
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = net(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        c1, c5 = _correct(logits, y)
        sums += (float(loss), c1, c5, y.shape[0])
    net.train(was_training)
    loss_sum, c1, c5, n = distributed.all_reduce_sum(sums.tolist(), device)
    n = max(n, 1)
    return {"loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "n": n}


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


def _datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset | None]:
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
    train_set = VideoClipDataset(d.dataset, d.split, sampler=sampler, **common)
    val_set = None
    if d.val_split:
        val_set = VideoClipDataset(d.dataset, d.val_split, sampler=CentreClip(interval=d.val_frame_interval),
                                   **common)
    if d.augment:
        train_set.transform, val = augment_transforms(d.augment, d.clip_size, flip=train_set.hflip)
        if val_set is not None:
            val_set.transform = val
    return train_set, val_set


def augment_transforms(augment: str, size: tuple[int, int], *, flip: bool) -> tuple[Any, Any]:
    """Training and validation transforms of ``--augment`` at ``size``.

    Public because evaluation must rebuild exactly the validation transform a run was trained with.

    ``light``: a random-resized crop of 60-100 % of the frame (aspect 1-1.6), flips where the dataset allows,
    no photometric changes; validation resizes the whole frame. For small or synthetic datasets whose action
    can sit anywhere in the frame (the quickstart's). Any other name is a dataset preset of
    `vidnet.data.transforms`, its validation crop scaled to this run's size.
    """
    from vidnet.data.transforms import ClipAugment, ClipEval, EvalConfig, TrainAugmentConfig, eval_preset, train_preset

    if augment == "light":
        train = TrainAugmentConfig(size=size, resize_short=None, crop="random_resized", scale=(0.6, 1.0),
                                   ratio=(1.0, 1.6), flip=flip, photometric=None)
        return ClipAugment(train), ClipEval(EvalConfig(crop_size=size[0], resize_short=None, resize=size,
                                                       crop="none"))
    train = ClipAugment(train_preset(augment, size=size, **({} if flip else {"flip": False})))
    preset = eval_preset(augment)
    short = None if preset.resize_short is None else round(preset.resize_short * size[0] / preset.crop_size)
    return train, ClipEval(eval_preset(augment, crop_size=size[0], resize_short=short))


def _write_config(cfg: TrainConfig, run_dir: Path) -> None:
    import yaml

    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _preprocessing(cfg: TrainConfig) -> dict[str, Any]:
    return {"clip_length": cfg.data.clip_length, "clip_size": list(cfg.data.clip_size),
            "train_frame_interval": cfg.data.train_frame_interval, "val_frame_interval": cfg.data.val_frame_interval,
            "mean": list(MEAN), "std": list(STD), "input": "RGB, [0, 1] then (x - mean) / std, [B, C, T, H, W]"}


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


class _Teacher:
    """A frozen teacher in eval mode; resizes and renormalises the student's clips to what it was trained on.

    A teacher whose checkpoint records its clip shape (``preprocessing``) sees every batch resized
    (trilinear, in time and space) to that shape: a model trained at one shape is most accurate there, and
    networks with fixed-size classifiers (C3D) accept no other. Mean/std differing from the student's are
    undone and reapplied.
    """

    def __init__(self, model: nn.Module, shape: tuple[int, int, int] | None, renorm: tuple[Any, Any] | None) -> None:
        self.model, self.shape, self.renorm = model, shape, renorm

    def describe(self) -> str:
        name = type(self.model).__name__
        return name + (f", clips resized to {'x'.join(map(str, self.shape))}" if self.shape else "")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.renorm is not None:
            scale, shift = self.renorm
            x = x * scale.to(x.device, x.dtype) + shift.to(x.device, x.dtype)
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            x = F.interpolate(x, size=self.shape, mode="trilinear", align_corners=False)
        return self.model(x)


def _load_teacher(cfg: TrainConfig, labels: dict[str, int], num_classes: int, device: torch.device) -> _Teacher:
    """Load ``--teacher``, check that it predicts the student's classes in the same order, freeze it."""
    from vidnet.network.finetune import find_head
    from vidnet.network.loading import load_model_with_meta

    path = Path(cfg.distill.teacher)
    if not path.is_file():
        raise UsageError(f"--teacher {path}: checkpoint not found")
    try:
        with torch.random.fork_rng(devices=[]):  # the teacher's throw-away initialisation must not move the RNG
            teacher, name, meta = load_model_with_meta(path, network=cfg.distill.teacher_network)
    except UsageError as err:
        raise UsageError(f"--teacher: {err}") from None
    t_labels = meta.get("labels")
    if t_labels and labels and dict(t_labels) != labels:
        diff = sorted(set(t_labels.items()) ^ set(labels.items()))[:3]
        raise UsageError(f"--teacher {path}: its label map ({len(t_labels)} classes) differs from "
                         f"{cfg.data.dataset}'s ({len(labels)} classes), e.g. {diff}")
    try:
        t_classes = find_head(teacher)[1].out_features
    except UsageError:
        t_classes = None
    if t_classes is not None and t_classes != num_classes:
        raise UsageError(f"--teacher {path}: {name} predicts {t_classes} classes, the dataset has {num_classes}")
    if not t_labels:
        log.warning(f"--teacher {path} records no label map: its class order is assumed to be the dataset's")
    teacher.eval().requires_grad_(False).to(device)
    pre = meta.get("preprocessing") or {}
    shape = None
    if pre.get("clip_length") and pre.get("clip_size"):
        shape = (int(pre["clip_length"]), *(int(v) for v in pre["clip_size"]))
        if shape == (cfg.data.clip_length, *cfg.data.clip_size) and not (cfg.schedule.long_cycles
                                                                        or cfg.schedule.short_cycles):
            shape = None  # same clips as the student's: nothing to resize
    renorm = None
    if pre.get("mean") and pre.get("std") and (tuple(pre["mean"]), tuple(pre["std"])) != (MEAN, STD):
        # student input x = (p - m) / s; the teacher wants (p - tm) / ts = x * s / ts + (m - tm) / ts
        m, s_, tm, ts = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1, 1)
                         for v in (MEAN, STD, pre["mean"], pre["std"]))
        renorm = (s_ / ts, (m - tm) / ts)
    return _Teacher(teacher, shape, renorm)


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


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    clips = batch["clip"].to(device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
    x = _normalize(clips)
    if channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, labels


def _normalize(clips: torch.Tensor) -> torch.Tensor:
    try:
        from vidnet.data.dataset import normalize
    except ImportError:  # the dataset module is not there yet: same arithmetic
        scale = 255.0 if clips.dtype == torch.uint8 else 1.0
        m = torch.tensor(MEAN, device=clips.device).mul_(scale).view(3, 1, 1, 1)
        s = torch.tensor(STD, device=clips.device).mul_(scale).view(3, 1, 1, 1)
        return clips.float().sub_(m).div_(s)
    return normalize(clips, MEAN, STD)


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
