"""`VideoClipDataset`: clips from a converted dataset (``index.csv``, ``labels.json``, one frames.db per video).

A sample is produced in one place, :meth:`VideoClipDataset.__getitem__`:

1. one generator ``worker_rng(seed, epoch, index)`` decides everything random about the sample (the temporal
   sampler's draw, then the augmentation's parameters), so a batch is the same whatever the number of
   DataLoader workers and whichever worker loads it;
2. the sampler gives the frame indices; all of them (every view of a multi-view sampler too) are read in
   **one SQL statement** and each distinct frame is decoded once (`vidnet.data.store.ClipReader`);
3. when the transform keeps at most half of the stored resolution, the JPEGs are decoded at a reduced
   scale in the DCT domain (1/2, 1/4 or 1/8: libjpeg-turbo's fast scaled IDCTs) before the transform's own
   resize, which is cheaper than a full decode followed by the same resize;
4. the transform makes the clip ``[T, h, w, 3]``; the result is returned as a tensor ``[C, T, h, w]``.

Stores are opened lazily in the process that reads them (a DataLoader worker), read-only, and kept in a
per-process LRU of at most ``max_open`` connections: a SQLite connection is never carried across a fork
(the process id is checked on every read and a child drops what it inherited). Opening a store costs about
as much as decoding two small frames (connect, then SQLite parses the schema on the first statement), so by
default the LRU holds every video of the dataset, bounded by the process's open-file limit
(`default_max_open`); an open store holds one file descriptor and a few tens of KB (its page cache is kept
at SQLite's minimum: the operating system caches the file anyway).

Normalisation is left to the device (`vidnet.data.preprocessing.normalize`): uint8 clips are 4x smaller to
collate, pin and copy.

Bad data. A clip that cannot be read raises `ClipError` naming the video and the reason (``missing``
store, ``unreadable`` file, ``corrupt`` frame, ``short``: fewer frames than ``n_frames`` claims). With
``bad_data="skip"`` the dataset logs a warning naming the video, counts it, and loads the next index
instead (``index + 1``, wrapping; deterministic, never a random substitute); more than
``max_bad_fraction`` of the dataset failing in one epoch aborts with a `ClipError`. The counts live in
shared memory, so the main process sees what the workers met: `bad_data_report` gives the epoch's summary
and `set_epoch` logs it when the next epoch starts. The epoch also lives there, so `set_epoch` reaches
persistent workers.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vidnet._io import inside
from vidnet._log import get_logger
from vidnet.data.index import IndexRow, read_index, read_labels, split_warnings
from vidnet.data.preprocessing import Preprocessing
from vidnet.data.sampling import CentreClip, RandomClip, TemporalSampler, worker_rng
from vidnet.data.store import STORE_NAME, ClipReader, decode_frames, jpeg_size
from vidnet.data.transforms import ClipAugment, ClipEval
from vidnet.errors import ClipError, CorruptFrameError, StoreError, UsageError, VidnetError

__all__ = [
    "VideoClipDataset",
    "ClipError",
    "BadDataReport",
    "decode_size",
    "default_max_open",
]

log = get_logger(__name__)

BadDataPolicy = Literal["raise", "skip"]
OutputType = Literal["uint8", "float"]
Size = tuple[int, int]

# Reason codes kept in shared memory (0 = no failure).
_REASONS = ("", "missing", "unreadable", "corrupt", "short")


def default_max_open() -> int:
    """Stores a process keeps open by default: a quarter of its open-file limit (the rest stays free for
    PyTorch's shared-memory tensors, which travel between processes as file descriptors), between 32 and
    1024. A quarter of the usual limit of 1024 is 256."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(32, min(1024, soft // 4))


def _resize_target(cfg: Any, hw: Size) -> Size:
    """Frame size after the transform's first resize step (short side or fixed size), or ``hw`` without one."""
    if getattr(cfg, "resize", None) is not None:
        return cfg.resize
    if getattr(cfg, "resize_short", None) is not None:
        r, short = cfg.resize_short, min(hw)
        return math.ceil(hw[0] * r / short), math.ceil(hw[1] * r / short)
    return hw


def decode_size(transform: Any, stored: Size, out: Size) -> Size | None:
    """The ``min_size`` for a reduced-scale decode that loses nothing ``transform`` keeps, or None.

    The transform resizes the frame (step 1), crops, and resizes the crop to ``out``; the resolution that
    reaches the output is the step-1 size times the crop's final scale (when it shrinks). A decode at a
    power-of-two fraction 1/2, 1/4, 1/8 of ``stored`` (libjpeg-turbo's fast scaled IDCTs; 3/8 etc. are no
    faster here) is used when it is still at least that large; otherwise None (decode at full size).
    Transforms other than `ClipAugment` and `ClipEval` can define ``decode_size(stored, out)`` themselves.

    Args:
        transform: the clip transform.
        stored: (height, width) of the stored frames.
        out: (height, width) of the clip the transform will produce.
    """
    if hasattr(transform, "decode_size") and not isinstance(transform, ClipAugment | ClipEval):
        return transform.decode_size(stored, out)
    cfg = getattr(transform, "config", None)
    if cfg is None or stored[0] < 2 or stored[1] < 2:
        return None
    base = _resize_target(cfg, stored)
    keep = 1.0  # final scale of the crop (<1 when it shrinks)
    crop = cfg.crop
    if isinstance(transform, ClipAugment):
        if crop == "none":
            base, keep = out, 1.0
        elif crop in ("random", "centre") and cfg.crop_size is not None:
            keep = max(out) / cfg.crop_size
        elif crop == "multiscale":
            short = min(base)
            smallest = min(s * short if s <= 1 else s for s in cfg.scales)
            keep = max(out) / smallest
        # random_resized zooms in by a random amount: only step 1 bounds what it needs.
    elif isinstance(transform, ClipEval) and crop in ("centre", "three"):
        keep = max(out) / cfg.crop_size
    need = (math.ceil(base[0] * min(1.0, keep)), math.ceil(base[1] * min(1.0, keep)))
    for denom in (8, 4, 2):
        h, w = math.ceil(stored[0] / denom), math.ceil(stored[1] / denom)
        if h >= need[0] and w >= need[1]:
            return h, w
    return None


@dataclass
class BadDataReport:
    """Videos that failed during one epoch.

    Attributes:
        epoch: the epoch.
        total: samples in the dataset.
        failed: list of ``(index, video, reason)``.
    """

    epoch: int
    total: int
    failed: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of failed videos."""
        return len(self.failed)

    @property
    def fraction(self) -> float:
        """Failed videos as a fraction of the dataset."""
        return self.count / self.total if self.total else 0.0

    def __str__(self) -> str:
        if not self.failed:
            return f"epoch {self.epoch}: no bad videos"
        by_reason: dict[str, int] = {}
        for _, _, reason in self.failed:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items()))
        videos = ", ".join(v for _, v, _ in self.failed[:10]) + (" ..." if self.count > 10 else "")
        return (f"epoch {self.epoch}: {self.count} of {self.total} videos ({self.fraction:.1%}) skipped "
                f"and replaced ({reasons}): {videos}")


class VideoClipDataset(Dataset):
    """Clips of the videos of a converted dataset.

    Args:
        root: the dataset root (``index.csv``, ``labels.json``, the stores; optionally ``dataset.json``).
        split: keep rows whose ``split`` equals this (``train``, ``val``, ``test``, ...); None keeps all.
        classes: keep only these label names (ids stay those of ``labels.json``).
        num_frames: clip length T (a multigrid key can override it per item).
        size: output (height, width), or one int for a square (overridable per item).
        sampler: a temporal sampler; default `RandomClip` for ``split="train"``, `CentreClip` otherwise.
            Multi-view samplers (`MultiClip`, `SequentialClips`: [N, T] indices) give ``[N, C, T, H, W]``.
        transform: ``transform(clip [T,H,W,3] uint8, rng, size=(h, w))``; default the training (split
            ``train``) or evaluation preset of the dataset family named in ``dataset.json`` (``ucf101``
            when absent or unknown), without horizontal flips when ``dataset.json`` says ``hflip: false``.
        seed: base seed of `worker_rng`.
        output: ``uint8`` (0..255; normalise on the device with `vidnet.data.preprocessing.normalize`) or
            ``float`` (0..1).
        return_meta: add ``video_id`` and ``frames`` (the sampled frame indices) to each sample.
        bad_data: ``raise`` a `ClipError`, or ``skip``: log it, count it, load the next index instead.
        max_bad_fraction: with ``skip``, abort when more than this fraction of the dataset fails in an epoch.
        max_open: most stores kept open per process (least recently used ones are closed); None (default):
            every video of the dataset when the open-file limit allows it (see `default_max_open`), so that
            each worker opens each store once.

    Attributes:
        labels: label name -> id (all of ``labels.json``).
        num_classes: ``len(labels)``.
        rows: the `IndexRow` of each sample, in index order.
        hflip: whether horizontal flips are allowed for this dataset.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        *,
        classes: list[str] | None = None,
        num_frames: int = 16,
        size: Size | int = (112, 112),
        sampler: TemporalSampler | None = None,
        transform: Callable[..., np.ndarray] | None = None,
        seed: int = 0,
        output: OutputType = "uint8",
        return_meta: bool = False,
        bad_data: BadDataPolicy = "raise",
        max_bad_fraction: float = 0.05,
        max_open: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / "index.csv").is_file():
            raise UsageError(f"{self.root}: not a dataset (no index.csv); run `vidnet convert` first")
        if output not in ("uint8", "float"):
            raise UsageError(f"output={output!r}: use 'uint8' or 'float'")
        if bad_data not in ("raise", "skip"):
            raise UsageError(f"bad_data={bad_data!r}: use 'raise' or 'skip'")
        if not 0 <= max_bad_fraction <= 1:
            raise UsageError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction!r}")
        if max_open is not None and (int(max_open) != max_open or max_open < 1):
            raise UsageError(f"max_open must be a positive integer, got {max_open!r}")
        if int(num_frames) != num_frames or num_frames < 1:
            raise UsageError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.labels = read_labels(self.root / "labels.json")
        self.num_classes = len(self.labels)
        rows = all_rows = read_index(self.root / "index.csv")  # bad, escaping or duplicate rows are errors
        for warning in split_warnings(rows):
            if split is not None and warning.startswith(f"split {split!r}"):
                log.warning("%s: %s", self.root, warning)
        if split is not None:
            rows = [r for r in rows if r.split == split]
        if classes is not None:
            unknown = sorted(set(classes) - set(self.labels))
            if unknown:
                raise UsageError(f"{self.root}: unknown class(es) {', '.join(map(repr, unknown))}")
            wanted = set(classes)
            rows = [r for r in rows if r.label in wanted]
        for r in rows:
            if r.label not in self.labels:
                raise VidnetError(f"{self.root / 'index.csv'}: label {r.label!r} of {r.id} is not in labels.json")
        if not rows:
            have = sorted({r.split for r in all_rows if r.split})
            hint = (f" (its splits: {', '.join(have)})" if have else
                    " (its index.csv gives no video a split: run the same `vidnet convert` again with "
                    "--val-fraction 0.2, which keeps the finished stores, or give an --index with a split column)")
            raise UsageError(f"{self.root}: no videos in split {split!r}" + (f" for {classes}" if classes else "")
                             + hint)
        self.rows: list[IndexRow] = rows
        self.split = split
        self.num_frames = int(num_frames)
        self.size: Size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        train = split == "train"
        self.sampler: TemporalSampler = sampler or (RandomClip() if train else CentreClip())
        pre = Preprocessing.for_dataset(self.root, clip_size=self.size)
        self.hflip = pre.hflip
        self.transform = transform or (pre.train_transform() if train else pre.eval_transform())
        self.seed = int(seed)
        self.output = output
        self.return_meta = return_meta
        self.bad_data = bad_data
        self.max_bad_fraction = float(max_bad_fraction)
        self.max_open = int(max_open) if max_open is not None else min(len({r.path for r in rows}), default_max_open())
        # Slot 0: epoch; slot 1 + i: reason code of sample i this epoch. Shared memory, so that the main
        # process sees workers' failures and workers see set_epoch (persistent workers too).
        self._shared = torch.zeros(len(rows) + 1, dtype=torch.int64).share_memory_()
        self._stores: OrderedDict[str, ClipReader] = OrderedDict()
        self._abs_root = os.path.abspath(self.root)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"VideoClipDataset({str(self.root)!r}, split={self.split!r}, videos={len(self)}, "
                f"num_frames={self.num_frames}, size={self.size}, sampler={self.sampler!r})")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stores"] = OrderedDict()  # connections never travel to another process
        state.pop("_counts_np", None)
        return state

    def _counts(self) -> np.ndarray:
        """A numpy view of the shared counters (indexing a tensor costs tens of microseconds)."""
        view = self.__dict__.get("_counts_np")
        if view is None:
            view = self._counts_np = self._shared.numpy()
        return view

    @property
    def epoch(self) -> int:
        """The epoch being loaded (shared with the workers)."""
        return int(self._counts()[0])

    def set_epoch(self, epoch: int) -> None:
        """Start an epoch: new clips from `worker_rng`, bad-data counts reset (the last epoch's logged)."""
        if int(epoch) != epoch or epoch < 0:
            raise UsageError(f"epoch must be a non-negative integer, got {epoch!r}")
        report = self.bad_data_report()
        if report.count:
            log.warning("%s", report)
        self._shared[1:] = 0
        self._shared[0] = int(epoch)

    def bad_data_report(self) -> BadDataReport:
        """The videos that failed so far in the current epoch (in every worker)."""
        codes = self._shared[1:].tolist()
        failed = [(i, self.rows[i].path or self.rows[i].id, _REASONS[c]) for i, c in enumerate(codes) if c]
        return BadDataReport(self.epoch, len(self), failed)

    def close(self) -> None:
        """Close this process's open stores."""
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    # -- reading ----------------------------------------------------------------------------------------

    def _video_name(self, row: IndexRow) -> str:
        return row.path or f"{row.label}/{row.dir_name}"

    def _store(self, row: IndexRow) -> ClipReader:
        if os.getpid() != self._pid:
            # A forked child: drop the parent's connections without using them.
            self._stores = OrderedDict()
            self._pid = os.getpid()
        key = row.path
        store = self._stores.get(key)
        if store is not None:
            self._stores.move_to_end(key)
            return store
        name = self._video_name(row)
        if not row.path:
            raise ClipError(f"{name}: not converted (no store path in index.csv)", video=name, reason="missing")
        if inside(self._abs_root, row.path, resolve=False) is None:  # read_index refuses such rows already
            raise ClipError(f"{name}: store path leads outside {self.root}", video=name, reason="missing")
        path = os.path.join(self._abs_root, row.path, STORE_NAME)
        if not os.path.isfile(path):
            raise ClipError(f"{name}: store missing ({path})", video=name, reason="missing")
        while len(self._stores) >= self.max_open:
            self._stores.popitem(last=False)[1].close()
        store = self._stores[key] = ClipReader(path)
        return store

    def n_frames(self, index: int) -> int:
        """Frames of the video at ``index``, as the index says (the store is asked when it says nothing)."""
        row = self.rows[index]
        if row.n_frames:
            return row.n_frames
        with self._clip_errors(row):
            return len(self._store(row))

    @contextmanager
    def _clip_errors(self, row: IndexRow) -> Iterator[None]:
        """Turn the store's errors into `ClipError`s naming the video and the reason."""
        name = self._video_name(row)
        try:
            yield
        except CorruptFrameError as err:
            raise ClipError(f"{name}: corrupt frame ({err})", video=name, reason="corrupt") from None
        except StoreError as err:
            reason = "short" if "missing from the store" in str(err) else "unreadable"
            raise ClipError(f"{name}: {reason} store ({err})", video=name, reason=reason) from None
        except IndexError as err:
            raise ClipError(f"{name}: {err}", video=name, reason="short") from None

    def decode_size(self, stored: Size, out: Size) -> Size | None:
        """``min_size`` of a reduced-scale decode for this dataset's transform (see `decode_size`)."""
        return decode_size(self.transform, stored, out)

    def read_frames(self, index: int, frames: np.ndarray, out: Size) -> np.ndarray:
        """Decoded RGB frames ``[len(frames), H, W, 3]`` of the video at ``index``, in one SQL statement, at
        a reduced scale when the transform's output ``out`` allows it.

        Subclasses override this to read another format (see `vidnet.data.benchmark`).

        Raises:
            ClipError: the store is missing or unreadable, a frame is corrupt or missing, or the store holds
                fewer frames than ``index.csv`` says.
        """
        row = self.rows[index]
        with self._clip_errors(row):
            store = self._store(row)
            blobs = store.get_bytes(frames)
            if row.n_frames and store.n_frames is not None and store.n_frames < row.n_frames:
                name = self._video_name(row)
                raise ClipError(f"{name}: store holds {store.n_frames} frames, index.csv says {row.n_frames}",
                                video=name, reason="short")
            return self.decode_blobs(store.path, frames, blobs, out)

    def decode_blobs(self, path: Path, frames: np.ndarray, blobs: Sequence[bytes], out: Size) -> np.ndarray:
        """Decode a clip's JPEG bytes (``blobs[i]`` holds frame ``frames[i]``; ``path`` names them in errors):
        each distinct frame once, at a reduced scale when the transform's output ``out`` allows it."""
        min_size = self.decode_size(jpeg_size(blobs[0]), out) if len(blobs) else None
        return decode_frames(path, frames, blobs, min_size)

    def _load(self, index: int, rng: np.random.Generator, num_frames: int, size: Size) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(self.sampler.sample(self.n_frames(index), num_frames, rng), dtype=np.int64)
        decoded = self.read_frames(index, frames.reshape(-1), size)
        if frames.ndim == 1:
            return self.transform(decoded, rng, size=size), frames
        views = decoded.reshape(*frames.shape, *decoded.shape[1:])
        clips = [self.transform(np.ascontiguousarray(v), rng, size=size) for v in views]
        # A transform returning several crops per view ([K, T, h, w, 3]) adds them view-major.
        clips = [c[None] if c.ndim == 4 else c for c in clips]
        return np.concatenate(clips), frames

    def _record(self, index: int, err: ClipError) -> None:
        self._shared[1 + index] = _REASONS.index(err.reason) if err.reason in _REASONS else 2

    def __getitem__(self, key: int | tuple[int, int, int, int]) -> dict[str, Any]:
        """One sample: ``{"clip", "label", "index"}`` (+ ``video_id``, ``frames`` with ``return_meta``).

        Args:
            key: a dataset index, or ``(index, num_frames, height, width)`` from a multigrid batch sampler.

        ``index`` in the result is the row actually loaded: with ``bad_data="skip"`` a replacement's.
        """
        if isinstance(key, tuple | list):
            if len(key) != 4:
                raise UsageError(f"a sample key is an index or (index, num_frames, height, width), got {key!r}")
            index, num_frames, h, w = (int(k) for k in key)
            size: Size = (h, w)
        else:
            index, num_frames, size = int(key), self.num_frames, self.size
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        epoch = self.epoch
        attempts = n if self.bad_data == "skip" else 1
        for step in range(attempts):
            current = (index + step) % n
            # Replacements draw from the stream of the index asked for: deterministic, independent of workers.
            rng = worker_rng(self.seed, epoch, index)
            try:
                clip, frames = self._load(current, rng, num_frames, size)
                break
            except ClipError as err:
                self._record(current, err)
                if self.bad_data == "raise":
                    raise
                report = self.bad_data_report()
                log.warning("skipping %s (%s): %s; loading index %d instead", err.video, err.reason, err,
                            (current + 1) % n)
                if report.fraction > self.max_bad_fraction:
                    raise ClipError(
                        f"{report.count} of {n} videos ({report.fraction:.1%}) failed in epoch {epoch}, more than "
                        f"max_bad_fraction={self.max_bad_fraction:g}; last: {err}", video=err.video,
                        reason=err.reason) from None
        else:  # pragma: no cover - max_bad_fraction < 1 stops earlier
            raise ClipError(f"every video of {self.root} failed", reason="unreadable")
        # Channels first with numpy: torch's copy kernels start an intra-op thread pool, which costs
        # milliseconds per clip in a main process whose cores are busy (num_workers=0).
        axes = (3, 0, 1, 2) if clip.ndim == 4 else (0, 4, 1, 2, 3)
        tensor = torch.from_numpy(np.ascontiguousarray(clip.transpose(axes)))
        if self.output == "float":
            tensor = tensor.float().div_(255)
        row = self.rows[current]
        out: dict[str, Any] = {"clip": tensor, "label": self.labels[row.label], "index": current}
        if self.return_meta:
            out["video_id"] = row.id
            out["frames"] = torch.from_numpy(frames)
        return out
