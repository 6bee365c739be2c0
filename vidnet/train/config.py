"""Typed configuration of ``vidnet train``: one dataclass per concern, validated on construction.

Every field is a command-line option (``clip_length`` is ``--clip-length``) and a key of a ``--config``
YAML/TOML file, flat (``clip-length: 16``) or in sections (``data: {clip_length: 16}``). Validation errors
name the option, so a user knows what to change. The resolved config is written beside every run and into
every checkpoint (`TrainConfig.to_dict`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from vidnet.errors import UsageError

__all__ = [
    "DataConfig",
    "DistillConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "RunConfig",
    "TrainConfig",
    "load_config_file",
    "flag",
]

Precision = Literal["fp32", "bf16", "fp16"]
BadData = Literal["raise", "skip"]


def flag(name: str) -> str:
    """The command-line spelling of a field: ``clip_length`` -> ``--clip-length``."""
    return "--" + name.replace("_", "-")


def _bad(name: str, value: Any, why: str) -> UsageError:
    return UsageError(f"{flag(name)} {value!r}: {why}")


def _positive(obj: Any, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        v = getattr(obj, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (v == 0 and not allow_zero):
            raise _bad(name, v, "must be " + ("a non-negative" if allow_zero else "a positive") + " number")


def _choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise _bad(name, v, f"choose one of {', '.join(choices)}")


def _as_size(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").split(",")
        value = [p for p in parts if p.strip()]
    if isinstance(value, int | float):
        value = (value, value)
    try:
        h, w = (int(v) for v in value) if len(value) == 2 else (int(value[0]),) * 2
    except (TypeError, ValueError):
        raise _bad("clip_size", value, "give one side (112) or height,width (112,128)") from None
    return h, w


@dataclass
class DataConfig:
    """Where the clips come from and how they are cut."""

    dataset: str = ""
    """Dataset folder written by ``vidnet convert`` (index.csv, labels.json, frames.db stores)."""
    split: str = "train"
    """Split of index.csv to train on."""
    val_split: str | None = "val"
    """Split to validate on; empty or None skips validation."""
    clip_length: int = 16
    """Frames per clip (T)."""
    clip_size: tuple[int, int] = (112, 112)
    """Crop height and width (S); one number means a square."""
    train_frame_interval: str = "2"
    """Frame step of training clips: ``2``, a list ``1,2,4`` or a range ``2-4`` (one drawn per clip)."""
    val_frame_interval: int = 2
    """Frame step of validation clips."""
    augment: str | None = None
    """Augmentation: a dataset preset (ucf101, hmdb51, kinetics, jester, mict, ...) or ``light`` (random-resized
    crop of 60-100 % of the frame, no photometric changes); None: the dataset's default preset."""
    workers: int = 4
    """DataLoader worker processes per GPU process (0 loads in the main process)."""
    bad_data: BadData = "raise"
    """Unreadable clip: ``raise`` stops with the file named; ``skip`` replaces it and counts it."""
    max_bad_fraction: float = 0.05
    """With ``--bad-data skip``: stop when more than this fraction of an epoch's clips were bad."""

    def __post_init__(self) -> None:
        self.clip_size = _as_size(self.clip_size)
        self.train_frame_interval = str(self.train_frame_interval).strip("[]() ").replace(" ", "")
        if self.val_split == "":
            self.val_split = None
        _positive(self, "clip_length", "val_frame_interval")
        _positive(self, "workers", allow_zero=True)
        if min(self.clip_size) < 8:
            raise _bad("clip_size", self.clip_size, "sides must be at least 8 pixels")
        _choice(self, "bad_data", ("raise", "skip"))
        if not 0 <= self.max_bad_fraction <= 1:
            raise _bad("max_bad_fraction", self.max_bad_fraction, "must be within [0, 1]")
        from vidnet.data.sampling import parse_interval

        try:
            parse_interval(self.train_frame_interval)
        except UsageError as err:
            raise _bad("train_frame_interval", self.train_frame_interval, str(err)) from None


@dataclass
class ModelConfig:
    """The network and how it is initialised and compiled."""

    network: str = ""
    """Registered model name (``vidnet models`` lists them), e.g. srtg_r3d_50."""
    pretrained_3d: str | None = None
    """Checkpoint whose matching weights initialise the model (shape mismatches, e.g. the classifier, are
    skipped and listed)."""
    fine_tune: bool = False
    """Fine-tune a pretrained model: the classifier trains at the base rate, the rest at 0.6 of it."""
    channels_last: bool = False
    """Store activations channels-last (``torch.channels_last_3d``); faster convolutions on recent GPUs."""
    compile: bool = False
    """Compile the model with ``torch.compile`` (slower first steps; each new multigrid shape recompiles)."""
    sync_bn: bool | None = None
    """SyncBatchNorm across processes; None: on when multigrid runs on several processes, as the paper does
    when the per-GPU batch gets small."""
    bn_sub_batch: str = "auto"
    """BatchNorm statistics over groups of N clips when the batch is larger (`SubBatchNorm3d`): ``auto`` uses
    groups of --batch-size with multigrid (unless SyncBatchNorm is on), ``off`` never, or a number N."""
    precise_bn: str = "auto"
    """Precise BN: before each validation and checkpoint, recompute every BatchNorm's running statistics over N
    training batches at the validation shape (PySlowFast's ``BN.USE_PRECISE_STATS``). ``auto``: 200 batches
    (at most an epoch's) with multigrid or in runs under 100 optimizer steps, whose running statistics are
    stale, else off; ``off``; or a number N."""

    def __post_init__(self) -> None:
        self.bn_sub_batch = str(self.bn_sub_batch).strip().lower()
        if self.bn_sub_batch not in ("auto", "off") and not (self.bn_sub_batch.isdigit() and int(self.bn_sub_batch)):
            raise _bad("bn_sub_batch", self.bn_sub_batch, "give auto, off or a positive number of clips")
        self.precise_bn = str(self.precise_bn).strip().lower()
        if self.precise_bn not in ("auto", "off") and not (self.precise_bn.isdigit() and int(self.precise_bn)):
            raise _bad("precise_bn", self.precise_bn, "give auto, off or a positive number of batches")
        if self.fine_tune and not self.pretrained_3d:
            raise _bad("fine_tune", True, "needs --pretrained-3d (the weights to fine-tune)")


@dataclass
class OptimConfig:
    """Optimizer and the per-step update."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    """``sgd`` (momentum, nesterov) or ``adamw``."""
    lr_base: float | None = None
    """Peak learning rate for --batch-size clips per process; None: 0.1 for SGD, 1e-3 for AdamW."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = True
    """SGD Nesterov momentum (the original's choice)."""
    weight_decay: float = 1e-4
    """L2 / decoupled weight decay."""
    decay_norm_bias: bool = False
    """Also decay normalisation weights and biases (the original did; off by default, as is usual now)."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    clip_grad: float | None = None
    """Clip the global gradient norm to this value; None does not clip."""
    accumulate: int = 1
    """Accumulate gradients over this many batches per optimizer step."""
    ema: float | None = None
    """Keep an exponential moving average of the weights with this decay (e.g. 0.999), validated and saved
    as ``ema``; None disables it."""

    def __post_init__(self) -> None:
        _choice(self, "optimizer", ("sgd", "adamw"))
        if self.lr_base is None:
            self.lr_base = 0.1 if self.optimizer == "sgd" else 1e-3
        _positive(self, "lr_base", "accumulate", "clip_grad")
        _positive(self, "weight_decay", "momentum", allow_zero=True)
        if not 0 <= self.label_smoothing < 1:
            raise _bad("label_smoothing", self.label_smoothing, "must be within [0, 1)")
        if self.ema is not None and not 0 < self.ema < 1:
            raise _bad("ema", self.ema, "decay must be within (0, 1)")
        if int(self.accumulate) != self.accumulate:
            raise _bad("accumulate", self.accumulate, "must be a whole number of batches")


@dataclass
class ScheduleConfig:
    """Epochs, learning-rate schedule and multigrid cycles."""

    batch_size: int = 16
    """Clips per process per step (the base batch B of multigrid)."""
    end_epoch: int = 100
    """Epochs of the base schedule (multigrid's long cycle runs 1.5x as many, with fewer iterations)."""
    lr_schedule: Literal["multistep", "cosine"] = "multistep"
    """``multistep`` (x --lr-factor at each of --lr-steps) or ``cosine``."""
    lr_steps: tuple[int, ...] = (15, 30, 40)
    """Epochs at which multistep multiplies the learning rate by --lr-factor (and the long cycle restarts)."""
    lr_factor: float = 0.1
    """Multistep decay factor."""
    warmup_epochs: float = 0.0
    """Linear warm-up length in epochs."""
    min_lr: float = 0.0
    """Final learning rate of the cosine schedule."""
    long_cycles: bool = False
    """Multigrid long cycle (batch x8/x4/x2/x1 with smaller clips) over each learning-rate stage."""
    short_cycles: bool = False
    """Multigrid short cycle (batch x4/x2/x1 at crop /2, /sqrt2, x1) every three iterations."""
    epoch_factor: float = 1.5
    """With --long-cycles: multigrid epochs over base epochs."""
    lr_scale_max: float | None = None
    """With --long-cycles: cap of the learning-rate multiplier (linear scaling gives x8, x4, x2 with the batch);
    None keeps the paper's linear rule. Small datasets with few iterations per stage need a cap (docs/train.md)."""
    long_cycle_min_frames: int = 1
    """With --long-cycles: leave out the long-cycle stages whose clips would be shorter than this many frames
    (1 keeps the paper's four; with --clip-length 8, 4 drops the 2-frame stage)."""

    def __post_init__(self) -> None:
        if isinstance(self.lr_steps, str):
            self.lr_steps = tuple(int(s) for s in self.lr_steps.strip("[]() ").replace(" ", "").split(",") if s)
        self.lr_steps = tuple(int(s) for s in self.lr_steps)
        _positive(self, "batch_size", "end_epoch", "lr_factor", "epoch_factor", "lr_scale_max", "long_cycle_min_frames")
        _positive(self, "warmup_epochs", "min_lr", allow_zero=True)
        _choice(self, "lr_schedule", ("multistep", "cosine"))
        if self.lr_scale_max is not None and self.lr_scale_max < 1:
            raise _bad("lr_scale_max", self.lr_scale_max, "must be at least 1 (the base shape's multiplier)")
        if list(self.lr_steps) != sorted(set(self.lr_steps)) or any(s <= 0 for s in self.lr_steps):
            raise _bad("lr_steps", list(self.lr_steps), "must be distinct positive epochs in ascending order")
        if self.long_cycles and (not self.lr_steps or self.lr_steps[-1] >= self.end_epoch):
            raise _bad("long_cycles", True, f"needs --lr-steps before --end-epoch {self.end_epoch} (the long cycle "
                       "repeats per learning-rate stage; the last stage is the fine-tune at the base shape)")


@dataclass
class RunConfig:
    """Devices, precision, outputs, resume and logging."""

    gpus: int = 0
    """GPUs on this node: 0 trains on the CPU; N > 1 starts N processes (DistributedDataParallel). Under
    torchrun the processes come from torchrun and this is ignored."""
    precision: Precision = "fp32"
    """``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + gradient scaling)."""
    model_dir: str = "runs"
    """Outputs go to ``<model-dir>/<dataset name>/<network>/`` (checkpoints, CSV, config, log)."""
    save_frequency: int = 1
    """Write a checkpoint every this many epochs (and the last and best ones)."""
    keep_last: int = 2
    """Keep this many of the most recent resumable checkpoints (``ep-*.pth``), deleting older ones; 0 keeps
    all. ``best.pth`` (weights only) is always kept."""
    val_frequency: int = 1
    """Validate every this many epochs (and after the last)."""
    resume: str | None = None
    """``auto``: continue from the latest checkpoint of the run folder if there is one; or a checkpoint path."""
    resume_epoch: int | None = None
    """Continue from the checkpoint written after this epoch (the original's --resume-epoch)."""
    random_seed: int = 1
    """Seed of weights, shuffling and augmentation; the same seed gives the same run."""
    log_file: str | None = None
    """Also write the log to this file (default: train.log in the run folder)."""
    log_interval: int = 10
    """Log a line every this many steps."""
    debug_mode: bool = False
    """Debug logging and anomaly detection (slow)."""
    nan_patience: int = 5
    """Stop after this many consecutive non-finite losses (each one's step is skipped)."""
    tensorboard: bool | None = None
    """TensorBoard events in ``<run>/tb``: True needs the tensorboard package (``pip install 'vidnet[tb]'``), False
    never, None when it is installed (the log says when it is not)."""
    max_steps: int | None = None
    """Stop after this global step and save a resumable checkpoint (benchmarks, tests, time-boxed jobs)."""

    def __post_init__(self) -> None:
        _choice(self, "precision", ("fp32", "bf16", "fp16"))
        _positive(self, "gpus", "random_seed", "keep_last", allow_zero=True)
        _positive(self, "save_frequency", "val_frequency", "log_interval", "nan_patience", "max_steps")
        _positive(self, "resume_epoch", allow_zero=True)
        if self.resume is not None and self.resume_epoch is not None:
            raise _bad("resume_epoch", self.resume_epoch, "give --resume or --resume-epoch, not both")
        if self.resume == "":
            self.resume = None


@dataclass
class DistillConfig:
    """Knowledge distillation from a trained teacher (Hinton et al., arXiv 1503.02531)."""

    teacher: str | None = None
    """Checkpoint of the teacher (a vidnet training checkpoint, or weights with --teacher-network); it runs
    frozen, in eval mode, under the same autocast on the same clips; it is not saved with the student."""
    teacher_network: str | None = None
    """Registered name of the teacher, for checkpoints that do not name their network."""
    distill_alpha: float = 0.5
    """Weight of the soft term: loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy."""
    distill_temperature: float = 4.0
    """Softmax temperature T of the soft term."""

    def __post_init__(self) -> None:
        if self.teacher == "":
            self.teacher = None
        if isinstance(self.distill_alpha, bool) or not isinstance(self.distill_alpha, int | float) \
                or not 0 <= self.distill_alpha <= 1:
            raise _bad("distill_alpha", self.distill_alpha, "must be within [0, 1]")
        _positive(self, "distill_temperature")
        if self.teacher_network and not self.teacher:
            raise _bad("teacher_network", self.teacher_network, "needs --teacher (the teacher's weights)")


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "run": RunConfig,
    "distill": DistillConfig,
}
#: field name -> section, for flat config files and the command line.
FIELD_SECTION: dict[str, str] = {f.name: sec for sec, cls in _SECTIONS.items() for f in fields(cls)}


@dataclass
class TrainConfig:
    """Everything ``vidnet train`` needs; see the section classes for each option."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        if not self.model.network:
            raise UsageError("--network is required (vidnet models lists the names)")
        if not self.data.dataset:
            raise UsageError("--dataset is required (a folder written by vidnet convert)")
        if self.run.precision == "fp16" and self.run.gpus == 0:
            raise _bad("precision", "fp16", "needs a GPU (--gpus 1 or more); on the CPU use bf16")

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from flat ``{field: value}`` (CLI or flat file keys; dashes allowed); unknown keys are errors."""
        per: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in _SECTIONS and isinstance(value, Mapping):
                for k, v in value.items():
                    k = k.replace("-", "_")
                    if FIELD_SECTION.get(k) != name:
                        raise UsageError(f"config section {name!r} has no option {k!r}")
                    per[name][k] = v
                continue
            if name not in FIELD_SECTION:
                close = [f for f in FIELD_SECTION if name[:4] in f]
                hint = f" (did you mean {', '.join(flag(c) for c in close[:3])}?)" if close else ""
                raise UsageError(f"unknown option {flag(name)}{hint}")
            per[FIELD_SECTION[name]][name] = value
        try:
            parts = {s: _SECTIONS[s](**kw) for s, kw in per.items()}
        except TypeError as err:  # a wrong type that the dataclass could not even take
            raise UsageError(f"bad configuration: {err}") from None
        return cls(**parts)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain-JSON dict (tuples become lists); `from_flat` reads it back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def flat(self) -> dict[str, Any]:
        """``{field: value}`` across sections."""
        return {k: v for sec in self.to_dict().values() for k, v in sec.items()}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config into a dict (flat or sectioned keys)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise UsageError(f"{p}: config must be .yaml, .yml, .toml or .json")
    except UsageError:
        raise
    except Exception as err:  # the parsers' own exception types differ; report them the same way
        raise UsageError(f"{p}: not a valid config file: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: the config must be a mapping of option names to values")
    return data
