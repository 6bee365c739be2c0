"""Loading a model for evaluation and running it over the views of each video.

Two protocols, always reported side by side because they are routinely confused (e.g. issues 24, 53, 80
and 117 of kenshohara/3D-ResNets-PyTorch, 428 and 444 of facebookresearch/SlowFast):

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

from vidnet.data.dataset import VideoClipDataset, decode_size
from vidnet.data.index import read_labels
from vidnet.data.preprocessing import Preprocessing, normalize
from vidnet.data.sampling import CentreClip, MultiClip, WholeVideo
from vidnet.errors import UsageError, VidnetError
from vidnet.eval.metrics import log_softmax, softmax

__all__ = ["EvalModel", "Predictions", "SequenceMode", "load_eval_model", "is_single_frame", "make_dataset",
           "make_sequence_dataset", "predict_dataset", "predict_sequences", "predict_frames", "clip_accuracy"]

SequenceMode = Literal["frames", "sequence"]


@dataclass
class EvalModel:
    """A model ready for evaluation, with what its input must look like.

    Attributes:
        model: the network, in eval mode.
        network: its registry name.
        class_names: label names in id order.
        preprocessing: the record of how its clips were made (clip shape, intervals, mean/std, transforms).
    """

    model: nn.Module
    network: str
    class_names: list[str]
    preprocessing: Preprocessing

    @property
    def clip_length(self) -> int:
        """Frames per clip (T)."""
        return self.preprocessing.clip_length

    @property
    def clip_size(self) -> tuple[int, int]:
        """(height, width) of a clip."""
        return self.preprocessing.clip_size

    @property
    def interval(self) -> int:
        """Frame step of evaluation clips."""
        return self.preprocessing.val_frame_interval

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean (RGB, pixels in [0, 1])."""
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation."""
        return self.preprocessing.std


def load_eval_model(
    checkpoint: str | os.PathLike | Any,
    *,
    network: str | None = None,
    labels: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    clip_length: int | None = None,
    clip_size: int | None = None,
    interval: int | None = None,
) -> EvalModel:
    """Build the model of a vidnet checkpoint (a path, or a `vidnet.network.weights.WeightFile` already read),
    or of weights from elsewhere given ``network`` and ``labels``.

    Weights come through the one door (`vidnet.network.weights.load_model`: safe reading, wrappers and
    prefixes removed, original key layouts remapped, every weight required). A vidnet checkpoint carries its
    network, label map and preprocessing; the keyword options override them. Weights from elsewhere need
    ``network`` and a ``labels.json``; their preprocessing is the defaults (16 frames, 112x112, interval 2,
    Kinetics mean/std) with the transform family of ``dataset`` when given.

    Raises:
        VidnetError: unreadable or refused file, unknown network, missing label file, weights that do not fit.
    """
    from vidnet.network.weights import WeightFile, load_model, read_weight_file

    wf = read_weight_file(checkpoint if isinstance(checkpoint, WeightFile) else Path(checkpoint))
    path = wf.where
    label_map = read_labels(labels) if labels is not None else wf.labels
    if not label_map:
        raise UsageError(f"{path}: weights without a label map (not written by vidnet train): give "
                         f"--labels labels.json" + ("" if network or wf.network else " and --network NAME"))
    loaded = load_model(wf, network=network, num_classes=len(label_map))
    pre = Preprocessing.from_record(wf.meta.get("preprocessing"), dataset=dataset, config=wf.meta.get("config"))
    pre = pre.replace(clip_length=clip_length, clip_size=clip_size, val_frame_interval=interval)
    names = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    return EvalModel(model=loaded.model, network=loaded.network, class_names=names, preprocessing=pre)


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


def _sampler(em: EvalModel, clips: int) -> CentreClip | MultiClip:
    """The temporal views of a protocol: the centre clip for ``clips=1``, else ``clips`` spread evenly."""
    return CentreClip(interval=em.interval) if clips == 1 else MultiClip(num_clips=clips, interval=em.interval)


def make_dataset(root: str | os.PathLike, split: str | None, em: EvalModel, *, clips: int = 1,
                 crops: int = 1) -> VideoClipDataset:
    """The dataset of one protocol: ``clips=crops=1`` is the centre clip, else ``clips x crops`` views."""
    ds = VideoClipDataset(root, split, num_frames=em.clip_length, size=em.clip_size, sampler=_sampler(em, clips),
                          return_meta=True)
    ds.transform = em.preprocessing.eval_transform(crops)
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
    ds.transform = em.preprocessing.eval_transform()
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
        read: ``read(indices, min_size_for) -> RGB uint8 [len(indices), H, W, 3]``; ``min_size_for(stored
            (h, w))`` is the reduced JPEG decode size the transform allows (`vidnet.data.dataset.decode_size`),
            which a frames.db reader passes to its decoder so that its frames equal the dataset's.
    """
    if n_frames < 1:
        raise VidnetError("the video has no frames")
    index = np.asarray(_sampler(em, clips).sample(n_frames, em.clip_length, None), dtype=np.int64)
    index = index.reshape(-1, em.clip_length)
    transform = em.preprocessing.eval_transform(crops)
    decoded = read(index.reshape(-1), lambda stored: decode_size(transform, stored, em.clip_size))
    frames = decoded.reshape(*index.shape, *decoded.shape[1:])
    views = []
    for clip in frames:
        out = transform(np.ascontiguousarray(clip), None, size=em.clip_size)
        views += list(out) if out.ndim == 5 else [out]
    batch = torch.from_numpy(np.stack(views).transpose(0, 4, 1, 2, 3).copy())  # [V, C, T, H, W]
    device = torch.device(device)
    em.model.to(device).eval()
    return _forward(em, batch, device, batch_size, False).numpy()


@torch.no_grad()
def clip_accuracy(
    model: nn.Module,
    dataset,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 8,
    limit: int | None = None,
) -> float:
    """Single-clip top-1 accuracy of ``model`` on a ``VideoClipDataset`` (uint8 clips, normalised here).

    Build the dataset with `make_dataset` (one centre clip and the checkpoint's own
    validation transform), so the number is the one ``vidnet test`` and training validation report.
    """
    from torch.utils.data import Subset

    ds = Subset(dataset, range(min(limit, len(dataset)))) if limit is not None else dataset
    correct = total = 0
    model = model.eval()
    for batch in DataLoader(ds, batch_size=batch_size):
        pred = model(normalize(batch["clip"], mean, std)).argmax(1)
        correct += int((pred == batch["label"]).sum())
        total += len(pred)
    if total == 0:
        raise UsageError("the evaluation split has no clips")
    return correct / total
