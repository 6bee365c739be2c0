"""Preprocessing, in one place: normalisation constants, `normalize`, the transform rules per dataset family,
and the record every checkpoint carries so that evaluation and prediction rebuild exactly the clips a model
was trained and validated on.

The rules (`transforms`):

* no ``--augment``: the training and evaluation presets of the dataset's family, the family being the
  ``name`` in the dataset's ``dataset.json`` (``ucf101`` when absent or unknown; see
  `vidnet.data.transforms.train_preset` for the families), without horizontal flips where ``dataset.json``
  says ``hflip: false`` (Jester: a flip turns "swipe left" into "swipe right");
* ``--augment light``: a random-resized crop of 60-100 % of the frame and flips where allowed; validation
  resizes the whole frame (small or synthetic datasets whose action can sit anywhere);
* ``--augment FAMILY``: that family's presets, the validation crop scaled to the clip size.

Video accuracy's 3-crop view (`view_transform`) resizes the frame's shorter side to the clip size and takes
left/centre/right crops, as PySlowFast's 3-crop testing.

`Preprocessing` is the record: clip length and size, frame intervals, mean/std, the family, the augment
setting and whether flips are allowed. ``vidnet train`` writes it into every checkpoint; ``vidnet test`` and
``vidnet predict`` read it back through `Preprocessing.from_record`, so both build the same clip from the
same frames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidnet._log import get_logger
from vidnet.data.transforms import ClipAugment, ClipEval, EvalConfig, TrainAugmentConfig, eval_preset, train_preset
from vidnet.errors import UsageError, VidnetError

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "SRTG_MEAN",
    "SRTG_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_FAMILY",
    "Preprocessing",
    "normalize",
    "dataset_info",
    "family_of",
    "transforms",
    "view_transform",
]

log = get_logger(__name__)

# Normalisation constants, RGB order, for pixels scaled to [0, 1].
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
"""Kinetics-400 pixel mean: torchvision's video models (R3D/MC3/R(2+1)D, ``models/video/resnet.py``); the
default of ``vidnet train``."""
KINETICS_STD = (0.22803, 0.22145, 0.216989)
"""Kinetics-400 pixel standard deviation, same source as `KINETICS_MEAN`."""
SRTG_MEAN = (124 / 255, 117 / 255, 104 / 255)
"""What the original SRTG code (alexandrosstergiou/SRTG-ActionRecognition) normalised with: [124, 117, 104] /
255, RGB order."""
SRTG_STD = (1 / (0.0167 * 255),) * 3
"""The original SRTG code's standard deviation, 1 / (0.0167 * 255) = 0.2348 for every channel."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet mean, for 2D backbones pretrained on ImageNet (torchvision's image models)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet standard deviation."""

DEFAULT_FAMILY = "ucf101"
"""The family of a dataset whose ``dataset.json`` names none (or one without presets)."""


def normalize(
    clips: torch.Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Scale uint8 clips to [0, 1] and normalise each channel, on whatever device ``clips`` is on.

    Call it after moving the batch to the device: the uint8 batch is 4x smaller to copy than float.

    Args:
        clips: uint8 (0..255) or float (0..1) tensor whose channel axis is the 4th from the end:
            ``[C, T, H, W]``, ``[B, C, T, H, W]`` or ``[B, N, C, T, H, W]``.
        mean: per-channel mean in RGB order, for pixels in [0, 1] (`KINETICS_MEAN`, `SRTG_MEAN`, ...).
        std: per-channel standard deviation, same convention.
        dtype: floating type of the result (``torch.float16``/``bfloat16`` halve the memory).

    Returns:
        ``(clips / 255 - mean) / std`` (without the ``/ 255`` for float input), as ``dtype``.
    """
    if clips.dim() < 4 or clips.shape[-4] != len(mean) or len(mean) != len(std):
        raise UsageError(f"normalize: expected [..., C, T, H, W] with C = {len(mean)}, got {tuple(clips.shape)}")
    scale = 255.0 if clips.dtype == torch.uint8 else 1.0
    shape = (len(mean), 1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=clips.device).mul_(scale).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=clips.device).mul_(scale).view(shape)
    return clips.to(torch.float32).sub_(m).div_(s).to(dtype)


def dataset_info(root: str | os.PathLike) -> dict[str, Any]:
    """The dataset's ``dataset.json`` (``name``, ``hflip``, ...), or ``{}`` when it has none.

    Raises:
        VidnetError: the file exists but is not a JSON object.
    """
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VidnetError(f"{path}: not a readable dataset.json ({err})") from None
    if not isinstance(data, dict):
        raise VidnetError(f"{path}: expected a JSON object")
    return data


def family_of(name: str | None) -> str:
    """The preset family of a dataset name (`DEFAULT_FAMILY` when it has none)."""
    if not name:
        return DEFAULT_FAMILY
    try:
        eval_preset(str(name))
    except UsageError:
        log.debug("no augmentation preset for %r; using %s's", name, DEFAULT_FAMILY)
        return DEFAULT_FAMILY
    return str(name)


def transforms(family: str, augment: str | None, size: tuple[int, int], *,
               hflip: bool = True) -> tuple[ClipAugment, ClipEval]:
    """The training and validation transforms of a run (see the module docstring for the rules).

    Args:
        family: the dataset's preset family (`family_of`).
        augment: ``--augment`` (None, ``light`` or a family name).
        size: clip (height, width).
        hflip: whether the dataset allows horizontal flips.
    """
    no_flip = {} if hflip else {"flip": False}
    if augment == "light":
        train = TrainAugmentConfig(size=size, resize_short=None, crop="random_resized", scale=(0.6, 1.0),
                                   ratio=(1.0, 1.6), flip=hflip, photometric=None)
        return ClipAugment(train), ClipEval(EvalConfig(crop_size=size[0], resize_short=None, resize=size,
                                                       crop="none"))
    if augment:
        preset = eval_preset(augment)
        short = None if preset.resize_short is None else round(preset.resize_short * size[0] / preset.crop_size)
        return (ClipAugment(train_preset(augment, size=size, **no_flip)),
                ClipEval(eval_preset(augment, crop_size=size[0], resize_short=short)))
    return ClipAugment(train_preset(family, size=size, **no_flip)), ClipEval(eval_preset(family))


def view_transform(size: tuple[int, int]) -> ClipEval:
    """Video accuracy's spatial views: the shorter side resized to the clip's, then left/centre/right crops."""
    side = min(size)
    return ClipEval(EvalConfig(crop_size=side, resize_short=side, crop="three"))


@dataclass(frozen=True)
class Preprocessing:
    """What a model's input must look like, saved in every checkpoint (`to_record`).

    Attributes:
        clip_length: frames per clip (T).
        clip_size: (height, width).
        train_frame_interval: training frame step (a number or a range such as ``1-3``).
        val_frame_interval: frame step of validation and evaluation clips.
        mean: per-channel mean (RGB, pixels in [0, 1]).
        std: per-channel standard deviation.
        family: the dataset's preset family.
        augment: ``--augment`` of the run (None: the family's presets).
        hflip: whether horizontal flips were allowed.
    """

    clip_length: int = 16
    clip_size: tuple[int, int] = (112, 112)
    train_frame_interval: str = "2"
    val_frame_interval: int = 2
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    family: str = DEFAULT_FAMILY
    augment: str | None = None
    hflip: bool = True
    notes: tuple[str, ...] = field(default=(), compare=False)
    """What `from_record` had to assume (a record written before a field existed)."""

    @classmethod
    def for_dataset(cls, root: str | os.PathLike, **fields: Any) -> Preprocessing:
        """The record of a run on dataset ``root``: family and flips from its ``dataset.json``."""
        info = dataset_info(root)
        return cls(family=family_of(info.get("name")), hflip=bool(info.get("hflip", True)), **fields)

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, *, dataset: str | os.PathLike | None = None,
                    config: Mapping[str, Any] | None = None) -> Preprocessing:
        """Read what `to_record` wrote. Fields a record lacks (checkpoints of older vidnet, weights from
        elsewhere) are taken from ``dataset``'s ``dataset.json`` when given, the run's ``config`` (its
        ``data.augment``), else the defaults; each assumption is listed in `notes`."""
        record = dict(record or {})
        notes = []
        base = cls.for_dataset(dataset) if dataset is not None else cls()
        values: dict[str, Any] = {}
        for name in ("clip_length", "clip_size", "train_frame_interval", "val_frame_interval", "mean", "std",
                     "family", "augment", "hflip"):
            recorded = name in record and (record[name] is not None or name == "augment")
            if recorded:
                values[name] = record[name]
            elif name == "augment" and config is not None:
                values[name] = ((config.get("data") or {}) if isinstance(config, Mapping) else {}).get("augment")
            elif name in ("family", "hflip") and record:
                notes.append(f"{name} not recorded: {getattr(base, name)!r} assumed"
                             + (f" (from {dataset})" if dataset is not None else ""))
        size = values.get("clip_size", base.clip_size)
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(
            clip_length=int(values.get("clip_length", base.clip_length)), clip_size=size,
            train_frame_interval=str(values.get("train_frame_interval", base.train_frame_interval)),
            val_frame_interval=int(values.get("val_frame_interval", base.val_frame_interval)),
            mean=tuple(float(v) for v in values.get("mean", base.mean)),
            std=tuple(float(v) for v in values.get("std", base.std)),
            family=family_of(values.get("family", base.family)), augment=values.get("augment", base.augment),
            hflip=bool(values.get("hflip", base.hflip)), notes=tuple(notes),
        )

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with some fields changed (command-line overrides)."""
        fields = {k: v for k, v in asdict(self).items()}
        fields.update({k: v for k, v in changes.items() if v is not None})
        if isinstance(fields["clip_size"], int):
            fields["clip_size"] = (fields["clip_size"], fields["clip_size"])
        fields["clip_size"] = tuple(fields["clip_size"])
        fields["mean"], fields["std"], fields["notes"] = tuple(fields["mean"]), tuple(fields["std"]), self.notes
        return Preprocessing(**fields)

    def to_record(self) -> dict[str, Any]:
        """Plain types only (a checkpoint entry)."""
        return {"clip_length": self.clip_length, "clip_size": list(self.clip_size),
                "train_frame_interval": self.train_frame_interval, "val_frame_interval": self.val_frame_interval,
                "mean": list(self.mean), "std": list(self.std), "family": self.family, "augment": self.augment,
                "hflip": self.hflip, "input": "RGB, [0, 1] then (x - mean) / std, [B, C, T, H, W]"}

    def train_transform(self) -> ClipAugment:
        """The training augmentation of the run."""
        return transforms(self.family, self.augment, self.clip_size, hflip=self.hflip)[0]

    def eval_transform(self, crops: int = 1) -> ClipEval:
        """The validation transform of the run (``crops=1``), or the 3-crop views (``crops=3``)."""
        if crops == 3:
            return view_transform(self.clip_size)
        if crops != 1:
            raise UsageError(f"--crops must be 1 or 3, got {crops}")
        return transforms(self.family, self.augment, self.clip_size, hflip=self.hflip)[1]

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        """`normalize` with this record's mean and std."""
        return normalize(clips, self.mean, self.std)
