"""Loading a model for evaluation and running it over the views of each video.

Two protocols, always reported side by side because they are routinely confused (anchors §3):

* **clip accuracy**: one centre clip per video through the validation transform the model was trained
  with, exactly what ``vidnet train`` validates on;
* **video accuracy**: ``N`` clips spread evenly over the video (`MultiClip`, the 10-clip protocol) times
  ``K`` spatial crops (1: the validation transform; 3: the frame's shorter side resized to the clip size,
  then left/centre/right crops as PySlowFast's 3-crop testing), the softmax of every view averaged.

Two more, for models that accept any clip length:

* **per-frame** (single-frame 2D models): every frame of the video is classified on its own (a 1-frame clip)
  and the frames' log-probabilities are averaged, as the course seed does (its sum of frame log-probabilities
  ranks classes identically); on by default for models `is_single_frame` recognises;
* **whole video**: every ``interval``-th frame of the video in one clip, one forward pass.

Everything is deterministic: the samplers and transforms draw nothing, the model runs in eval mode, and the
data are read in index order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vidnet.data.dataset import VideoClipDataset, normalize
from vidnet.data.index import read_labels
from vidnet.data.sampling import CentreClip, MultiClip, WholeVideo
from vidnet.data.transforms import ClipEval, EvalConfig
from vidnet.errors import UsageError, VidnetError
from vidnet.eval.metrics import log_softmax, softmax

__all__ = ["EvalModel", "Predictions", "SequenceMode", "load_eval_model", "is_single_frame", "clip_transform",
           "view_transform", "make_dataset", "make_sequence_dataset", "predict_dataset", "predict_sequences",
           "predict_frames"]

SequenceMode = Literal["frames", "sequence"]


@dataclass
class EvalModel:
    """A model ready for evaluation, with what its input must look like.

    Attributes:
        model: the network, in eval mode.
        network: its registry name.
        class_names: label names in id order.
        clip_length: frames per clip (T).
        clip_size: (height, width) of a clip.
        interval: frame step of evaluation clips.
        mean: per-channel mean (RGB, pixels in [0, 1]); std: the standard deviation.
        augment: the training ``--augment`` (decides the validation transform), or None.
    """

    model: nn.Module
    network: str
    class_names: list[str]
    clip_length: int
    clip_size: tuple[int, int]
    interval: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str | None = None


def load_eval_model(
    checkpoint: str | os.PathLike,
    *,
    network: str | None = None,
    labels: str | os.PathLike | None = None,
    clip_length: int | None = None,
    clip_size: int | None = None,
    interval: int | None = None,
) -> EvalModel:
    """Build the model of a vidnet checkpoint, or of a bare state dict given ``network`` and ``labels``.

    A vidnet checkpoint carries its network, label map and preprocessing; the keyword options override them.
    Weights from elsewhere (a bare or ``state_dict``-wrapped dict) need ``network`` and a ``labels.json``;
    their preprocessing is the trainer's defaults (16 frames, 112x112, interval 2, Kinetics mean/std) unless
    overridden.

    Raises:
        VidnetError: unreadable file, unknown network, missing label file, weights that do not fit.
    """
    from vidnet.network import UnknownModelError, create_model
    from vidnet.train import checkpoint as ckpt_io
    from vidnet.train.config import DataConfig
    from vidnet.train.loop import MEAN, STD

    path = Path(checkpoint)
    try:
        ckpt = ckpt_io.load_checkpoint(path)
    except ckpt_io.CheckpointError:
        if network is None or labels is None or not path.is_file():
            raise
        ckpt = None
    if ckpt is not None:
        label_map = dict(ckpt.get("labels") or {})
        if labels is not None:
            label_map = read_labels(labels)
        net = network or ckpt.get("network")
        pre = ckpt.get("preprocessing") or {}
        augment = (ckpt.get("config") or {}).get("data", {}).get("augment")
        state = ckpt["model"]
    else:
        label_map, net, pre, augment = read_labels(labels), network, {}, None
        from vidnet.network.weights import read_state_dict

        state = read_state_dict(path)
    if not label_map:
        raise VidnetError(f"{path}: no label map inside; give --labels labels.json")
    defaults = DataConfig()
    size = clip_size or pre.get("clip_size") or defaults.clip_size
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    try:
        model = create_model(net, num_classes=len(label_map))
    except UnknownModelError as err:
        raise UsageError(f"--network: {err}") from None
    if ckpt is not None and isinstance(ckpt.get("architecture"), dict):  # a pruned model's channel counts
        from vidnet.network.compress import apply_channel_spec

        apply_channel_spec(model, ckpt["architecture"])
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise VidnetError(f"{path}: weights do not fit {net} with {len(label_map)} classes: "
                          f"{str(err).splitlines()[0]}") from None
    model.eval()
    names = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    return EvalModel(
        model=model, network=str(net), class_names=names,
        clip_length=int(clip_length or pre.get("clip_length") or defaults.clip_length), clip_size=size,
        interval=int(interval or pre.get("val_frame_interval") or defaults.val_frame_interval),
        mean=tuple(pre.get("mean") or MEAN), std=tuple(pre.get("std") or STD), augment=augment,
    )


def is_single_frame(em: EvalModel) -> bool:
    """Whether ``em`` is a single-frame 2D model, whose video score is its per-frame average.

    True when it was trained on 1-frame clips (``clip_length`` 1, as the quickstart's ``tiny_2d``), or when
    the registry tags its network as 2D: depth tag ``2d`` (``tiny_2d``) or family ``frame2d``
    (``frame_resnet*``, which classify every frame of a clip on its own).
    """
    if em.clip_length == 1:
        return True
    from vidnet.network import UnknownModelError, model_info

    try:
        info = model_info(em.network)
    except UnknownModelError:
        return False
    return info.depth == "2d" or info.family == "frame2d"


def clip_transform(em: EvalModel, *, hflip: bool = True) -> ClipEval | None:
    """The validation transform of training (None: the dataset's default preset, as the trainer used)."""
    if not em.augment:
        return None
    # The trainer's own choice of validation transform, so that clip accuracy is its validation number.
    from vidnet.train.loop import augment_transforms

    return augment_transforms(em.augment, em.clip_size, flip=hflip)[1]


def view_transform(em: EvalModel, crops: int, *, hflip: bool = True) -> ClipEval | None:
    """Spatial views: 1 = the validation transform; 3 = three crops of the short-side-resized frame."""
    if crops == 1:
        return clip_transform(em, hflip=hflip)
    if crops != 3:
        raise UsageError(f"--crops must be 1 or 3, got {crops}")
    side = min(em.clip_size)
    return ClipEval(EvalConfig(crop_size=side, resize_short=side, crop="three"))


def _sampler(em: EvalModel, clips: int) -> CentreClip | MultiClip:
    """The temporal views of a protocol: the centre clip for ``clips=1``, else ``clips`` spread evenly."""
    return CentreClip(interval=em.interval) if clips == 1 else MultiClip(num_clips=clips, interval=em.interval)


def make_dataset(root: str | os.PathLike, split: str | None, em: EvalModel, *, clips: int = 1,
                 crops: int = 1) -> VideoClipDataset:
    """The dataset of one protocol: ``clips=crops=1`` is the centre clip, else ``clips x crops`` views."""
    ds = VideoClipDataset(root, split, num_frames=em.clip_length, size=em.clip_size, sampler=_sampler(em, clips),
                          return_meta=True)
    transform = view_transform(em, crops, hflip=ds.hflip)
    if transform is not None:
        ds.transform = transform
    _check_labels(root, ds, em)
    return ds


def make_sequence_dataset(root: str | os.PathLike, split: str | None, em: EvalModel, *,
                          mode: SequenceMode) -> VideoClipDataset:
    """Whole videos through the validation transform, one sample per video (lengths differ: batch size 1).

    ``mode="frames"``: every frame (interval 1), for `predict_sequences`' per-frame averaging;
    ``mode="sequence"``: every ``em.interval``-th frame, at least ``em.clip_length`` (a short video loops).
    """
    if mode not in ("frames", "sequence"):
        raise UsageError(f"mode must be 'frames' or 'sequence', got {mode!r}")
    frames = mode == "frames"
    sampler = WholeVideo(interval=1 if frames else em.interval)
    ds = VideoClipDataset(root, split, num_frames=1 if frames else em.clip_length, size=em.clip_size,
                          sampler=sampler, return_meta=True)
    transform = clip_transform(em, hflip=ds.hflip)
    if transform is not None:
        ds.transform = transform
    _check_labels(root, ds, em)
    return ds


def _check_labels(root: str | os.PathLike, ds: VideoClipDataset, em: EvalModel) -> None:
    missing = sorted(set(ds.labels) ^ set(em.class_names))
    if missing or len(ds.labels) != len(em.class_names):
        raise VidnetError(f"{root}: its labels.json does not match the model's {len(em.class_names)} classes "
                          f"(differing: {', '.join(missing[:5])})")


@dataclass
class Predictions:
    """Per-view logits of a set of videos, the unit that is saved, re-analysed and fused.

    Videos are identified by their **key**, the name of their store's folder (`IndexRow.key`), unique in a
    dataset; the index ``id`` repeats when several segments are cut from one source video, so it is kept as a
    column beside the segment's times, never used to match videos.

    Attributes:
        keys: one unique key per video.
        labels: true class ids (``-1`` when unknown).
        class_names: label names in id order.
        logits: float32 ``[videos, views, classes]``.
        model: what produced them (network name and protocol), shown by ``vidnet fuse``.
        video_ids: the index ``id`` of each video (default: the keys).
        time_start: start of each video's segment in its source, in seconds (NaN: the whole video).
        time_end: end of the segment (NaN: the whole video).
    """

    keys: list[str]
    labels: np.ndarray
    class_names: list[str]
    logits: np.ndarray
    model: str = ""
    video_ids: list[str] | None = None
    time_start: np.ndarray | None = None
    time_end: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.keys = [str(k) for k in self.keys]
        n = len(self.keys)
        self.video_ids = list(self.keys) if self.video_ids is None else [str(v) for v in self.video_ids]
        nan = np.full(n, np.nan)
        self.time_start = nan.copy() if self.time_start is None else np.asarray(self.time_start, dtype=np.float64)
        self.time_end = nan.copy() if self.time_end is None else np.asarray(self.time_end, dtype=np.float64)
        lengths = {len(self.labels), len(self.logits), len(self.video_ids), len(self.time_start), len(self.time_end)}
        if lengths != {n}:
            raise VidnetError(f"predictions of {n} videos with columns of lengths {sorted(lengths)}")

    def duplicate_keys(self) -> list[str]:
        """Keys that occur more than once (files written before keys existed were keyed by a repeating id)."""
        seen: set[str] = set()
        return sorted({k for k in self.keys if k in seen or seen.add(k)})

    def log_probs(self) -> np.ndarray:
        """Video log-probabilities: log of the mean softmax over the views ``[videos, classes]``."""
        return np.log(np.maximum(softmax(self.logits).mean(axis=1), 1e-300))

    def view_log_probs(self) -> np.ndarray:
        """Log-softmax of every view ``[videos, views, classes]``."""
        return log_softmax(self.logits)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (logits, labels, keys, video_ids, time_start, time_end, class_names) atomically."""
        from vidnet._io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, logits=self.logits.astype(np.float32), labels=self.labels.astype(np.int64),
                     keys=np.array(self.keys, dtype=str), video_ids=np.array(self.video_ids, dtype=str),
                     time_start=self.time_start, time_end=self.time_end,
                     class_names=np.array(self.class_names, dtype=str), model=np.array(self.model))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        """Read what `save` wrote (a file without keys, from an older vidnet, is keyed by its video ids).

        Raises:
            VidnetError: missing file or not a vidnet predictions file.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                logits = z["logits"]
                labels, ids, names = z["labels"], z["video_ids"].tolist(), z["class_names"].tolist()
                keys = z["keys"].tolist() if "keys" in z.files else list(ids)
                t0 = z["time_start"] if "time_start" in z.files else None
                t1 = z["time_end"] if "time_end" in z.files else None
                model = str(z["model"]) if "model" in z.files else ""
        except (OSError, ValueError, KeyError) as err:
            raise VidnetError(f"{path}: not a vidnet predictions file ({err})") from None
        if logits.ndim == 2:
            logits = logits[:, None]
        try:
            return cls(keys=keys, labels=labels, class_names=names, logits=logits, model=model, video_ids=ids,
                       time_start=t0, time_end=t1)
        except VidnetError as err:
            raise VidnetError(f"{path}: {err}") from None


def _forward(em: EvalModel, clips: torch.Tensor, device: torch.device, chunk: int, amp: bool) -> torch.Tensor:
    """Logits of a batch of clips ``[B, C, T, H, W]`` (uint8), ``chunk`` clips per forward pass."""
    out = []
    for part in clips.split(chunk):
        x = normalize(part.to(device, non_blocking=True), em.mean, em.std)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(em.model(x).float().cpu())
    return torch.cat(out)


def _collect(
    em: EvalModel,
    dataset: VideoClipDataset,
    score: Callable[[torch.Tensor, torch.device], torch.Tensor],
    *,
    batch_size: int,
    workers: int,
    device: str | torch.device,
    on_batch: Callable[[int], Any] | None,
    what: str,
) -> Predictions:
    """`Predictions` of ``dataset`` in index order: ``score(clips, device) -> [videos, views, classes]`` per
    loader batch of ``batch_size`` videos."""
    device = torch.device(device)
    em.model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    rows = []
    labels: list[int] = []
    logits: list[np.ndarray] = []
    for batch in loader:
        out = score(batch["clip"], device)
        logits.append(out.numpy())
        rows += [dataset.rows[int(i)] for i in batch["index"]]  # the row actually loaded
        labels += [int(v) for v in batch["label"]]
        if on_batch is not None:
            on_batch(out.shape[0])
    times = [[math.nan if t is None else t for t in (r.time_start, r.time_end)] for r in rows]
    t = np.array(times, dtype=np.float64).reshape(-1, 2)
    return Predictions(keys=[r.key for r in rows], labels=np.array(labels, dtype=np.int64),
                       class_names=list(em.class_names), logits=np.concatenate(logits).astype(np.float32),
                       model=f"{em.network} {what}", video_ids=[r.id for r in rows], time_start=t[:, 0],
                       time_end=t[:, 1])


@torch.no_grad()
def predict_dataset(
    em: EvalModel,
    dataset: VideoClipDataset,
    *,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device = "cpu",
    amp: bool = False,
    on_batch: Callable[[int], Any] | None = None,
) -> Predictions:
    """Logits of every view of every video of ``dataset``, in index order.

    Args:
        batch_size: clips per forward pass (videos are grouped so that a batch holds about this many).
        workers: DataLoader worker processes.
        device: where the model runs.
        amp: bfloat16 autocast.
        on_batch: called with the number of videos done in each batch (a progress bar).
    """
    probe = dataset[0]["clip"]
    views = probe.shape[0] if probe.dim() == 5 else 1

    def score(clip: torch.Tensor, device: torch.device) -> torch.Tensor:
        flat = clip.reshape(-1, *clip.shape[-4:])
        return _forward(em, flat, device, batch_size, amp).reshape(clip.shape[0], views, -1)

    return _collect(em, dataset, score, batch_size=max(1, batch_size // views), workers=workers, device=device,
                    on_batch=on_batch, what=f"{views} views")


@torch.no_grad()
def predict_sequences(
    em: EvalModel,
    dataset: VideoClipDataset,
    *,
    mode: SequenceMode,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device = "cpu",
    amp: bool = False,
    on_batch: Callable[[int], Any] | None = None,
) -> Predictions:
    """Video scores from whole videos (a `make_sequence_dataset`), one view per video.

    ``mode="frames"``: each frame is a 1-frame clip (``batch_size`` frames per forward pass); the video's
    logits are the mean of its frames' log-probabilities (softmax of them is the normalised geometric mean
    of the frame probabilities). ``mode="sequence"``: the whole clip in one forward pass; its logits as is.
    """
    if mode not in ("frames", "sequence"):
        raise UsageError(f"mode must be 'frames' or 'sequence', got {mode!r}")

    def score(clip: torch.Tensor, device: torch.device) -> torch.Tensor:
        # clip: [1, C, T, H, W], T = the video's sampled length
        if mode == "frames":
            frames = clip[0].transpose(0, 1).unsqueeze(2)  # [T, C, 1, H, W]: every frame a clip of its own
            out = torch.log_softmax(_forward(em, frames, device, batch_size, amp).double(), dim=1).mean(dim=0)
        else:
            out = _forward(em, clip, device, 1, amp)[0]
        return out.float()[None, None]

    what = "per-frame average" if mode == "frames" else "whole video"
    return _collect(em, dataset, score, batch_size=1, workers=workers, device=device, on_batch=on_batch, what=what)


@torch.no_grad()
def predict_frames(
    em: EvalModel,
    n_frames: int,
    read: Callable[[np.ndarray], np.ndarray],
    *,
    clips: int = 10,
    crops: int = 3,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Logits ``[views, classes]`` of one video given by a frame reader (a video file or a frames.db).

    The same sampler and transforms as `make_dataset`: ``clips=crops=1`` is the centre clip.

    Args:
        n_frames: frames in the video.
        read: ``read(indices) -> RGB uint8 [len(indices), H, W, 3]``.
    """
    if n_frames < 1:
        raise VidnetError("the video has no frames")
    index = np.asarray(_sampler(em, clips).sample(n_frames, em.clip_length, None), dtype=np.int64)
    index = index.reshape(-1, em.clip_length)
    decoded = read(index.reshape(-1))
    frames = decoded.reshape(*index.shape, *decoded.shape[1:])
    transform = view_transform(em, crops)
    if transform is None:
        from vidnet.data.transforms import eval_preset

        transform = ClipEval(eval_preset("ucf101"))  # VideoClipDataset's default preset
    views = []
    for clip in frames:
        out = transform(np.ascontiguousarray(clip), None, size=em.clip_size)
        views += list(out) if out.ndim == 5 else [out]
    batch = torch.from_numpy(np.stack(views).transpose(0, 4, 1, 2, 3).copy())  # [V, C, T, H, W]
    device = torch.device(device)
    em.model.to(device).eval()
    return _forward(em, batch, device, batch_size, False).numpy()
