"""`vidnet benchmark-io`: end-to-end clip loading speed of the frame store against other formats.

What is measured. Every format goes through the same pipeline: `VideoClipDataset` (same `RandomClip`
sampler and seed, so the same videos and frames), a transform that resizes the short side to S and takes
the centre S x S crop, uint8 tensors, a real ``torch.utils.data.DataLoader`` (same shuffled order) with
``--workers`` processes. Only the frame reading differs, and each format is read the way its users read it,
as fast as it can be read correctly:

* ``sqlite``: the dataset's frames.db stores (one SQL statement per clip, per-worker LRU of connections);
* ``jpg``: a folder per video of the very same JPEG bytes (``frame_00001.jpg``...), one file read per frame;
* ``hdf5``: one ``.h5`` file per video holding the decoded frames as raw uint8 ``[T, H, W, 3]``, one chunk
  per frame, uncompressed. Each distinct frame of a clip is one chunk read (``read_direct_chunk``, which
  skips h5py's selection machinery): on 640x272 frames 1.3 ms for 16 frames against 1.9 ms for sixteen
  ``ds[i]`` reads, 3.6 ms for a strided slice and 825 ms for one fancy-index read ``ds[[10, 12, ...]]`` (h5py
  builds a selection per index). Files stay open in the same per-worker LRU as the stores. Nothing to decode;
* ``hdf5-jpeg``: one ``.h5`` file per video holding the same JPEG bytes as a 1-D variable-length uint8
  dataset ``video`` (the layout of Kensho Hara's 3D-ResNets-PyTorch tools, ``util_scripts/generate_video_hdf5.py``,
  read there as ``video_data[i]`` per frame; files stay open here, where that loader opens one per clip);
* ``video``: a video file per video decoded with PyAV, seeking to the key frame before the clip
  (`vidnet.data.video.read_video_frames`). The dataset's own source files when the index names them
  (``source`` column) and they are found: relative to ``--videos DIR``, or, without it, relative to the
  dataset folder. Otherwise the stored frames are re-encoded in the scratch folder (libx264, CRF 18,
  preset veryfast, key-frame interval 250), so that every format holds the same frames;
* ``decode``: the same JPEG bytes already in memory (loaded before the workers start), so only decoding,
  resizing and batching remain: the physical limit of a JPEG store.

JPEG formats use the same reduced-scale DCT decode rule (`vidnet.data.dataset.decode_size`).

Timing. Each cell's loaders (one per format, persistent workers) first run a short warm-up epoch of one
batch per worker (worker start, imports, first opens), consumed to the end so that no work is left running.
Then every format runs ``repeat`` timed epochs in interleaved rounds (round r starts with a different format,
so that no format always follows the same one). An epoch is timed from the moment its iterator exists to the
arrival of its last batch: every clip is produced inside the interval (never the dequeue of a batch prefetched
before the clock started), and the number of batches is a multiple of the worker count so that every
worker produces the same number of whole batches. The same indices are drawn in every epoch and format.

Noise is reported, not hidden: a cell's figure is the median over its rounds, with the lowest and highest
round beside it, and a ratio to ``decode`` is taken round by round (the two epochs of one round ran seconds
apart, under the same load), then summarised the same way. A target is "met" when every round's ratio meets
it, "not met" when none does, and "within noise" when the rounds fall on both sides.

Figures: clips/s, frames/s (clips/s x T), MB/s (frames/s x the format's stored bytes per frame: how fast
the storage must deliver), bytes on disk per frame, and each format's ratio to ``decode`` in the same cell.
With ``full`` (``--full``): the four clip shapes of the original, reduced-scale decode against full decode +
resize for the same output, worker RSS growth over ``rss_clips`` clips (private resident memory from
``/proc/self/statm``), and 2 workers against 1.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from vidnet._log import get_logger
from vidnet._mp import process_pool
from vidnet.data.dataset import VideoClipDataset, decode_size
from vidnet.data.index import IndexRow
from vidnet.data.sampling import RandomClip, format_interval
from vidnet.data.store import STORE_NAME, FrameStore, decode_jpeg
from vidnet.data.transforms import ClipEval, EvalConfig
from vidnet.errors import ClipError, UsageError, VidnetError

__all__ = [
    "FORMATS",
    "QUICK_SHAPES",
    "FULL_SHAPES",
    "Shape",
    "BenchmarkOptions",
    "CellResult",
    "BenchmarkReport",
    "Spread",
    "parse_shape",
    "run_benchmark",
    "read_hdf5_frames",
    "rss_bytes",
    "verdict",
]

log = get_logger(__name__)

FORMATS = ("sqlite", "jpg", "hdf5", "hdf5-jpeg", "video", "decode")
Shape = tuple[int, int, int]
"""(batch size, frames per clip, output side)."""
QUICK_SHAPES: tuple[Shape, ...] = ((96, 16, 158),)
"""The default: the original's headline shape (batch, frames, size)."""
FULL_SHAPES: tuple[Shape, ...] = ((1536, 4, 80), (384, 8, 112), (96, 16, 158), (48, 16, 224))
"""The clip shapes the original reported (``--full``)."""


def parse_shape(text: str) -> Shape:
    """``"384x8x112"`` -> (384, 8, 112)."""
    try:
        b, t, s = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--shape {text!r}: expected BATCHxFRAMESxSIZE, e.g. 384x8x112") from None
    if min(b, t, s) < 1:
        raise UsageError(f"--shape {text!r}: every number must be positive")
    return b, t, s


def rss_bytes(*, private: bool = False) -> int:
    """Resident set size of this process from ``/proc/self/statm`` (0 where it does not exist).

    Args:
        private: subtract the resident shared pages. A DataLoader worker's RSS also counts the shared-memory
            batches it has collated and the main process has not yet released (a 96x16x112x112 uint8 batch is
            58 MB); those are not the worker's to keep, so growth is measured on the private part.
    """
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        pages = int(fields[1]) - (int(fields[2]) if private else 0)
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class Spread:
    """A figure measured in several rounds: the median, and the lowest and highest round."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(float(np.median(values)), float(min(values)), float(max(values)))


def verdict(value: Spread, need: float, *, lower_is_better: bool = False) -> str:
    """``met`` when every round meets ``need``, ``not met`` when none does, ``within noise`` otherwise."""
    lo, hi = (-value.high, -value.low) if lower_is_better else (value.low, value.high)
    need = -need if lower_is_better else need
    if lo >= need:
        return "met"
    if hi < need:
        return "not met"
    return "within noise"


@dataclass
class BenchmarkOptions:
    """Options of ``vidnet benchmark-io``.

    Attributes:
        shapes: (batch, frames, size) cells to measure.
        workers: DataLoader worker counts (0 = in the main process).
        formats: formats to compare (see `FORMATS`); ``decode`` is the reference of every ratio.
        batches: timed batches per cell and round; None derives it from ``max_clips``.
        max_clips: clips timed per cell and round when ``batches`` is None (at least one batch).
        repeat: timed rounds per cell, formats interleaved; the median counts and the spread is shown.
        scratch: folder for the comparison formats (kept, and reused by later runs); None: a temporary one.
        videos: decode the dataset's source videos (index.csv ``source``) from here; None: look for them
            relative to the dataset folder, and re-encode the stored frames when they are not all there.
        split: only videos of this split (None: all).
        seed: sampling seed (the same for every format).
        rss_clips: clips loaded by one worker for the memory measurement (0 skips it).
        scaling: measure sqlite with 2 workers against 1 (the shape ``scaling_shape``), interleaved.
        reduced: measure reduced-scale decode against full decode + resize.
        scaling_shape: the shape of the scaling and memory measurements.
        max_open: per-worker open stores/files (the dataset's ``max_open``; None: its default, every video
            within the open-file limit).
        frame_interval: the `RandomClip` frame step (an int, a tuple to draw from, or a range). 2 by default:
            the original's training interval for UCF-101/HMDB-51 (the smallest of its presets; Kinetics used
            4-6). Only ``video`` depends on it: it decodes every frame between the clip's first and last.
    """

    shapes: Sequence[Shape] = QUICK_SHAPES
    workers: Sequence[int] = (1,)
    formats: Sequence[str] = FORMATS
    batches: int | None = None
    max_clips: int = 192
    repeat: int = 5
    scratch: Path | None = None
    videos: Path | None = None
    split: str | None = None
    seed: int = 0
    rss_clips: int = 0
    scaling: bool = False
    reduced: bool = False
    scaling_shape: Shape = (96, 16, 112)
    max_open: int | None = None
    frame_interval: int | Sequence[int] = 2

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise UsageError(f"--formats: unknown {', '.join(unknown) or '(none given)'}; use {', '.join(FORMATS)}")
        if not self.shapes:
            raise UsageError("no --shape given")
        if any(w < 0 for w in self.workers) or not self.workers:
            raise UsageError(f"--workers must be non-negative integers, got {list(self.workers)}")
        if self.batches is not None and self.batches < 1:
            raise UsageError(f"--batches must be at least 1, got {self.batches}")
        if self.repeat < 1:
            raise UsageError(f"--repeat must be at least 1, got {self.repeat}")
        if self.max_clips < 1:
            raise UsageError(f"--max-clips must be at least 1, got {self.max_clips}")


@dataclass
class CellResult:
    """One format at one shape and worker count: per-round figures and their summaries."""

    format: str
    batch: int
    frames: int
    size: int
    workers: int
    clips: int
    """Clips per round."""
    round_clips_per_s: list[float]
    clips_per_s: float
    """Median over the rounds."""
    clips_per_s_low: float
    clips_per_s_high: float
    frames_per_s: float
    mb_per_s: float
    bytes_per_frame: float
    bytes_per_video: float
    ratio_to_decode: float | None = None
    """Median over the rounds of this format's clips/s over decode's in the same round."""
    ratio_low: float | None = None
    ratio_high: float | None = None

    @property
    def ratio(self) -> Spread | None:
        if self.ratio_to_decode is None:
            return None
        return Spread(self.ratio_to_decode, self.ratio_low, self.ratio_high)  # type: ignore[arg-type]


@dataclass
class BenchmarkReport:
    """Everything `run_benchmark` measured (``asdict`` gives the JSON written by ``--json``)."""

    dataset: str
    videos: int
    frames_per_video: float
    stored_size: tuple[int, int]
    video_source: str
    max_open: int = 0
    frame_interval: str = ""
    rounds: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpus: int = 0
    seconds: float = 0.0
    cells: list[CellResult] = field(default_factory=list)
    reduced_decode: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    scaling: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the comparison formats ----------------------------------------------------------------------------------


class _ProcessLRU:
    """Per-process cache of open handles (never used across a fork), closing the least recently used."""

    def __init__(self, size: int, opener: Callable[[Path], Any]) -> None:
        self.size, self.opener = size, opener
        self.pid = os.getpid()
        self.items: OrderedDict[Path, Any] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "items": OrderedDict()}

    def get(self, path: Path) -> Any:
        if os.getpid() != self.pid:
            self.items, self.pid = OrderedDict(), os.getpid()
        item = self.items.get(path)
        if item is None:
            while len(self.items) >= self.size:
                self.items.popitem(last=False)[1].close()
            item = self.items[path] = self.opener(path)
        else:
            self.items.move_to_end(path)
        return item


def _decode_jpegs(ds: VideoClipDataset, row: IndexRow, frames: np.ndarray, out: tuple[int, int],
                  blobs: Callable[[list[int]], list[bytes]]) -> np.ndarray:
    """Fetch each distinct frame's bytes once and decode them as the store's reader does."""
    unique = sorted(set(frames.tolist()))
    by_frame = dict(zip(unique, blobs(unique), strict=True))
    ordered = [by_frame[i] for i in frames.tolist()]
    with ds._clip_errors(row):
        return ds.decode_blobs(Path(row.path), frames, ordered, out)


class _SqliteDataset(VideoClipDataset):
    """The store, exactly as training reads it."""


class _JpgDataset(VideoClipDataset):
    def __init__(self, root: Path, *, folder: Path, **kw: Any) -> None:
        super().__init__(root, **kw)
        self.folder = folder

    def read_frames(self, index: int, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        row = self.rows[index]
        d = self.folder / row.path

        def blobs(unique: list[int]) -> list[bytes]:
            try:
                return [(d / f"frame_{i + 1:05d}.jpg").read_bytes() for i in unique]
            except OSError as err:
                raise ClipError(f"{row.path}: {err}", video=row.path, reason="missing") from None

        return _decode_jpegs(self, row, frames, out, blobs)


class _DecodeDataset(VideoClipDataset):
    """JPEG bytes in memory: one uint8 array per video plus frame offsets. Arrays, not lists of ``bytes``:
    touching a Python object in a forked worker writes its reference count and copies its memory page,
    which would charge this reference format a cost no store has."""

    def __init__(self, root: Path, *, blobs: dict[str, list[bytes]], **kw: Any) -> None:
        super().__init__(root, **kw)
        self.buffers = {}
        for path, video in blobs.items():
            offsets = np.cumsum([0, *map(len, video)])
            self.buffers[path] = (np.frombuffer(b"".join(video), np.uint8), offsets)

    def read_frames(self, index: int, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        row = self.rows[index]
        data, offsets = self.buffers[row.path]
        view = memoryview(data)
        return _decode_jpegs(self, row, frames, out, lambda unique: [view[offsets[i]:offsets[i + 1]] for i in unique])


def _open_h5(path: Path) -> Any:
    import h5py

    return h5py.File(path, "r")


def read_hdf5_frames(ds: Any, frames: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frames ``frames`` (0-based, any order, repeats allowed) of an h5py ``[T, H, W, C]`` uint8 dataset.

    Each distinct frame is read once. A dataset stored one uncompressed chunk per frame (the layout
    benchmark-io writes) is read chunk by chunk with ``read_direct_chunk``, which copies the chunk's bytes
    without building an h5py selection; any other layout frame by frame (``ds[i]``), or as one slice when
    the frames are consecutive. A fancy index ``ds[[i, j, ...]]`` is never used: h5py turns it into one
    hyperslab per index, hundreds of times slower on a chunked dataset.
    """
    idx = np.asarray(frames, dtype=np.int64).reshape(-1)
    unique = np.unique(idx)
    if len(unique) and (unique[0] < 0 or unique[-1] >= ds.shape[0]):
        raise IndexError(f"frame {int(unique[-1] if unique[-1] >= ds.shape[0] else unique[0])} out of range: "
                         f"the file holds {ds.shape[0]} frames")
    shape = tuple(ds.shape[1:])
    out = np.empty((len(unique), *shape), np.uint8)
    plain = ds.compression is None and not ds.shuffle and not ds.fletcher32 and ds.scaleoffset is None
    if ds.chunks == (1, *shape) and plain and ds.dtype == np.uint8:
        for k, i in enumerate(unique.tolist()):
            _, chunk = ds.id.read_direct_chunk((i, *(0,) * len(shape)))
            out[k] = np.frombuffer(chunk, np.uint8).reshape(shape)
    elif len(unique) and unique[-1] - unique[0] + 1 == len(unique):
        out[:] = ds[int(unique[0]) : int(unique[-1]) + 1]
    else:
        for k, i in enumerate(unique.tolist()):
            out[k] = ds[i]
    return out[np.searchsorted(unique, idx)]


class _Hdf5Files(VideoClipDataset):
    """One ``.h5`` file per video under ``folder``, its frames in the dataset ``video``. Files stay open in a
    per-worker LRU, as the stores do; whatever the layout, a frame the file lacks is a clip error (``short``)."""

    def __init__(self, root: Path, *, folder: Path, **kw: Any) -> None:
        super().__init__(root, **kw)
        self.folder = folder
        self.files = _ProcessLRU(self.max_open, _open_h5)

    def read_frames(self, index: int, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        row = self.rows[index]
        with self._clip_errors(row):
            return self._read(row, self.files.get(self.folder / f"{row.path}.h5")["video"], frames, out)

    def _read(self, row: IndexRow, video: Any, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError


class _Hdf5Dataset(_Hdf5Files):
    """Raw uint8 frames ``[T, H, W, 3]`` in HDF5: nothing to decode."""

    def _read(self, row: IndexRow, video: Any, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        return read_hdf5_frames(video, frames)


class _Hdf5JpegDataset(_Hdf5Files):
    """JPEG bytes in an HDF5 variable-length uint8 dataset, one element per frame (3D-ResNets-PyTorch)."""

    def _read(self, row: IndexRow, video: Any, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        return _decode_jpegs(self, row, frames, out, lambda unique: [video[i] for i in unique])


class _VideoDataset(VideoClipDataset):
    def __init__(self, root: Path, *, files: dict[str, Path], **kw: Any) -> None:
        super().__init__(root, **kw)
        self.files = files

    def read_frames(self, index: int, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        from vidnet.data.video import read_video_frames

        return read_video_frames(self.files[self.rows[index].path], frames)


def _make_jpg(args: tuple[Path, Path]) -> int:
    store_dir, out = args
    if (out / ".complete").is_file():
        return sum(p.stat().st_size for p in out.glob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    with FrameStore(store_dir) as store:
        for i, blob in enumerate(store.get_bytes(range(len(store)))):
            (out / f"frame_{i + 1:05d}.jpg").write_bytes(blob)
            total += len(blob)
    (out / ".complete").touch()
    return total


def _make_h5(fill: Callable[[Any, FrameStore], None], args: tuple[Path, Path]) -> int:
    """Write the ``.h5`` copy ``out`` of the store ``store_dir`` once, through a temporary name, with
    ``fill(h5_file, store)``; its size in bytes."""
    import h5py

    store_dir, out = args
    if not out.is_file():
        with FrameStore(store_dir) as store:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            with h5py.File(tmp, "w") as f:
                fill(f, store)
        os.replace(tmp, out)
    return out.stat().st_size


def _fill_hdf5(f: Any, store: FrameStore) -> None:
    frames = store.get_frames(range(len(store)))
    f.create_dataset("video", data=frames, chunks=(1, *frames.shape[1:]))


def _fill_hdf5_jpeg(f: Any, store: FrameStore) -> None:
    import h5py

    blobs = store.get_bytes(range(len(store)))
    video = f.create_dataset("video", (len(blobs),), dtype=h5py.vlen_dtype(np.uint8))
    for i, blob in enumerate(blobs):
        video[i] = np.frombuffer(blob, np.uint8)


def _make_video(args: tuple[Path, Path]) -> int:
    from vidnet.data.sample import write_video

    store_dir, out = args
    if not out.is_file():
        with FrameStore(store_dir) as store:
            frames = store.get_frames(range(len(store)))
            fps = store.meta.fps or 25
        h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
        out.parent.mkdir(parents=True, exist_ok=True)
        write_video(out, np.ascontiguousarray(frames[:, :h, :w]), round(fps), "libx264")
    return out.stat().st_size


_BUILDERS = {"jpg": (_make_jpg, ""), "hdf5": (partial(_make_h5, _fill_hdf5), ".h5"),
             "hdf5-jpeg": (partial(_make_h5, _fill_hdf5_jpeg), ".h5"),
             "video": (_make_video, ".mp4")}


def _build(kind: str, jobs: list[tuple[Path, Path]], processes: int) -> list[int]:
    fn = _BUILDERS[kind][0]
    if processes <= 1 or len(jobs) < 4:
        return [fn(j) for j in jobs]
    with process_pool(processes) as pool:
        return pool.map(fn, jobs, chunksize=4)


def _source_videos(rows: list[IndexRow], root: Path, videos: Path | None) -> dict[str, Path] | None:
    """Each row's source video file (index.csv ``source``, relative to ``videos``, or without it to the dataset
    folder ``root``), or None when the index names none or one is not found. With ``videos`` given, a missing
    one is a usage error naming it. A path that leads outside its folder is never followed."""
    base = (videos if videos is not None else root).resolve()
    files = {}
    for row in rows:
        src = row.extra.get("source")
        path = (base / src).resolve() if src else None
        if path is not None and not path.is_relative_to(base):
            raise UsageError(f"{root / 'index.csv'}: source {src!r} of {row.path} leads outside {base}")
        if path is None or not path.is_file():
            if videos is not None:
                raise UsageError(f"{videos}: no source video for {row.path} (index.csv source={src!r})")
            return None
        files[row.path] = path
    return files


# -- measuring ------------------------------------------------------------------------------------------------


class _FixedSampler(Sampler[int]):
    """The same ``n`` random indices every epoch (the same clips for every format and round); ``n`` can be
    changed between epochs, so a warm-up epoch and the timed epochs share one loader and its workers."""

    def __init__(self, size: int, n: int, seed: int) -> None:
        self.size, self.n, self.seed = size, n, seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed)
        return iter(torch.randint(self.size, (self.n,), generator=g).tolist())


def _loader(ds: VideoClipDataset, batch: int, workers: int, total: int, seed: int) -> DataLoader:
    sampler = _FixedSampler(len(ds), total, seed)
    return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)


def _timed_batches(batch: int, workers: int, opts: BenchmarkOptions) -> int:
    n = opts.batches if opts.batches is not None else max(1, math.ceil(opts.max_clips / batch))
    w = max(1, workers)
    return math.ceil(n / w) * w


def _measure(entries: dict[str, tuple[VideoClipDataset, int]], batch: int, opts: BenchmarkOptions
             ) -> dict[str, list[tuple[int, float]]]:
    """(clips, seconds) of each entry (a dataset and a worker count) in each of ``opts.repeat`` interleaved
    rounds, after a warm-up epoch. Round r starts with entry r (mod the number of entries)."""
    loaders = {k: _loader(ds, batch, w, batch * max(1, w), opts.seed) for k, (ds, w) in entries.items()}
    # Warm-up: one whole short epoch per loader (workers start, imports, first opens), so no work is left
    # running in the background when the timed epochs start.
    for k, loader in loaders.items():
        for _ in loader:
            pass
        loader.sampler.n = batch * _timed_batches(batch, entries[k][1], opts)  # type: ignore[attr-defined]
    rounds: dict[str, list[tuple[int, float]]] = {k: [] for k in loaders}
    keys = list(loaders)
    for r in range(opts.repeat):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            it = iter(loaders[k])  # a persistent loader's reset happens here, outside the clock
            t0 = time.perf_counter()
            n = sum(b["clip"].shape[0] for b in it)
            rounds[k].append((n, time.perf_counter() - t0))
    del loaders, it
    gc.collect()  # shuts the persistent workers down before the next cell
    return rounds


class _RssDataset(_SqliteDataset):
    def __getitem__(self, key):
        out = super().__getitem__(key)
        out["rss"] = rss_bytes(private=True)
        return out


def _measure_rss(make: Callable[..., VideoClipDataset], shape: Shape, clips: int, seed: int) -> dict[str, float]:
    batch, t, s = shape
    ds = make(_RssDataset, t, s)
    batches = max(2, math.ceil(clips / batch))
    loader = _loader(ds, batch, 1, batch * batches, seed)
    rss = [int(b["rss"].max()) for b in loader]
    del loader
    gc.collect()
    first, last, peak = rss[0], rss[-1], max(rss)
    return {"clips": batches * batch, "private_after_first_batch_mb": first / 2**20, "private_end_mb": last / 2**20,
            "growth_mb": (last - first) / 2**20, "peak_growth_mb": (peak - first) / 2**20}


def _measure_reduced(blobs: dict[str, list[bytes]], stored: tuple[int, int], seed: int, rounds: int,
                     frames: int = 1500) -> dict[str, float]:
    """Per-frame decode + transform time for an output half (and a quarter) the stored size, full decode and
    reduced-scale decode interleaved in ``rounds`` rounds; the speed-up is taken round by round."""
    rng = np.random.default_rng(seed)
    all_blobs = [b for video in blobs.values() for b in video]
    sample = [all_blobs[i] for i in rng.integers(0, len(all_blobs), min(frames, len(all_blobs)))]
    out: dict[str, float] = {}
    for denom in (2, 4):
        side = min(stored) // denom
        if side < 8:
            continue
        transform = ClipEval(EvalConfig(resize_short=side, crop_size=side))
        min_size = decode_size(transform, stored, (side, side))
        times: dict[str, list[float]] = {"full": [], "reduced": []}
        for _ in range(rounds):
            for name, ms in (("full", None), ("reduced", min_size)):
                mh, mw = ms or (0, 0)
                t0 = time.perf_counter()
                for blob in sample:
                    transform(decode_jpeg(blob, min_height=mh, min_width=mw)[None])
                times[name].append((time.perf_counter() - t0) / len(sample) * 1e6)
        speedup = Spread.of([f / r for f, r in zip(times["full"], times["reduced"], strict=True)])
        out[f"1/{denom}_full_us"] = float(np.median(times["full"]))
        out[f"1/{denom}_reduced_us"] = float(np.median(times["reduced"]))
        out[f"1/{denom}_speedup"] = speedup.median
        out[f"1/{denom}_speedup_low"] = speedup.low
        out[f"1/{denom}_speedup_high"] = speedup.high
    return out


def run_benchmark(
    root: str | os.PathLike,
    opts: BenchmarkOptions,
    on_result: Callable[[CellResult], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> BenchmarkReport:
    """Build the comparison formats and measure every (format, shape, workers) cell; see the module docstring.

    Args:
        root: a converted dataset.
        opts: options.
        on_result: called after each cell.
        on_stage: called with a short description when a stage starts.

    Returns:
        The report, with the ratios to ``decode`` and the target checks filled in.
    """
    t_start = time.perf_counter()
    root = Path(root)
    stage = on_stage or (lambda text: log.info("%s", text))
    base = VideoClipDataset(root, opts.split, transform=lambda c, r, size: c)
    rows: list[IndexRow] = base.rows
    stored: dict[str, tuple[int, int]] = {}
    blobs: dict[str, list[bytes]] = {}
    store_bytes = 0
    frames_total = 0
    for row in rows:
        path = root / row.path / STORE_NAME
        try:
            with FrameStore(path) as store:
                stored[row.path] = (store.meta.height, store.meta.width)
                if "decode" in opts.formats or opts.reduced:
                    blobs[row.path] = store.get_bytes(range(len(store)))
                frames_total += len(store)
        except VidnetError as err:
            raise VidnetError(f"{path}: cannot benchmark a dataset with a bad store ({err})") from None
        store_bytes += path.stat().st_size
    sizes = set(stored.values())
    stored_size = max(sizes, key=lambda hw: list(stored.values()).count(hw))

    sources = _source_videos(rows, root, opts.videos) if "video" in opts.formats else None
    builds = [k for k in ("jpg", "hdf5", "hdf5-jpeg", "video") if k in opts.formats and not (k == "video" and sources)]
    tmp = None
    scratch = opts.scratch
    if scratch is None and builds:
        tmp = scratch = Path(tempfile.mkdtemp(prefix="vidnet-bench-"))
    processes = max(1, min(os.cpu_count() or 1, 8))
    disk: dict[str, float] = {"sqlite": store_bytes / len(rows),
                              "decode": sum(map(len, (b for v in blobs.values() for b in v))) / len(rows)}
    video_source = "-"
    try:
        extra: dict[str, dict[str, Any]] = {}
        if sources:
            disk["video"] = sum(p.stat().st_size for p in sources.values()) / len(rows)
            extra["video"] = {"files": sources}
            where = opts.videos if opts.videos is not None else root
            video_source = f"the dataset's source videos ({where})"
        for kind in builds:
            assert scratch is not None
            stage(f"{kind} copy of {len(rows)} videos in {scratch / kind} (writing the ones not there yet)")
            jobs = [(root / r.path, scratch / kind / f"{r.path}{_BUILDERS[kind][1]}") for r in rows]
            disk[kind] = sum(_build(kind, jobs, processes)) / len(rows)
            if kind == "video":
                extra[kind] = {"files": {r.path: j[1] for r, j in zip(rows, jobs, strict=True)}}
                video_source = ("stored frames re-encoded to H.264 (libx264 CRF 18, veryfast, key-frame interval "
                                "250): the index names no source video found (give --videos DIR)")
            else:
                extra[kind] = {"folder": scratch / kind}

        classes = {"sqlite": _SqliteDataset, "jpg": _JpgDataset, "hdf5": _Hdf5Dataset, "hdf5-jpeg": _Hdf5JpegDataset,
                   "video": _VideoDataset, "decode": _DecodeDataset}
        kwargs = {**extra, "decode": {"blobs": blobs}}

        def make(cls, t: int, s: int, fmt: str = "sqlite") -> VideoClipDataset:
            return cls(root, split=opts.split, num_frames=t, size=(s, s), sampler=RandomClip(opts.frame_interval),
                       transform=ClipEval(EvalConfig(resize_short=s, crop_size=s)), seed=opts.seed,
                       max_open=opts.max_open, **kwargs.get(fmt, {}))

        report = BenchmarkReport(str(root), len(rows), frames_total / len(rows), stored_size, video_source,
                                 max_open=base.max_open, frame_interval=format_interval(opts.frame_interval),
                                 rounds=opts.repeat, cpus=os.cpu_count() or 1)
        per_video_frames = frames_total / len(rows)
        for shape in opts.shapes:
            for workers in opts.workers:
                stage(f"{'x'.join(map(str, shape))} with {workers} worker(s): {', '.join(opts.formats)}, "
                      f"{opts.repeat} rounds")
                entries = {fmt: (make(classes[fmt], shape[1], shape[2], fmt), workers) for fmt in opts.formats}
                measured = _measure(entries, shape[0], opts)
                ref = measured.get("decode")
                for fmt, rounds in measured.items():
                    speeds = [n / s for n, s in rounds]
                    speed = Spread.of(speeds)
                    per_frame = disk[fmt] / per_video_frames
                    ratio = Spread.of([a / (n / s) for a, (n, s) in zip(speeds, ref, strict=True)]) if ref else None
                    cell = CellResult(fmt, *shape, workers, rounds[0][0], speeds, speed.median, speed.low, speed.high,
                                      speed.median * shape[1], speed.median * shape[1] * per_frame / 1e6, per_frame,
                                      disk[fmt], ratio.median if ratio else None, ratio.low if ratio else None,
                                      ratio.high if ratio else None)
                    report.cells.append(cell)
                    if on_result:
                        on_result(cell)

        if opts.reduced and blobs:
            stage("reduced-scale decode against full decode + resize")
            report.reduced_decode = _measure_reduced(blobs, stored_size, opts.seed, opts.repeat)
        if opts.scaling:
            stage(f"sqlite {'x'.join(map(str, opts.scaling_shape))} with 1 and 2 workers (scaling), "
                  f"{opts.repeat} rounds")
            entries = {f"{w}": (make(_SqliteDataset, *opts.scaling_shape[1:]), w) for w in (1, 2)}
            measured = _measure(entries, opts.scaling_shape[0], opts)
            one = [n / s for n, s in measured["1"]]
            two = [n / s for n, s in measured["2"]]
            speedup = Spread.of([b / a for a, b in zip(one, two, strict=True)])
            report.scaling = {"shape": "x".join(map(str, opts.scaling_shape)), "1_worker_clips_per_s":
                              float(np.median(one)), "2_workers_clips_per_s": float(np.median(two)),
                              "speedup": speedup.median, "speedup_low": speedup.low, "speedup_high": speedup.high,
                              "cpus": os.cpu_count() or 1}
        if opts.rss_clips:
            stage(f"worker memory over {opts.rss_clips} clips")
            report.rss = _measure_rss(make, opts.scaling_shape, opts.rss_clips, opts.seed)
        report.targets = _targets(report)
        report.load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        report.seconds = time.perf_counter() - t_start
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _targets(report: BenchmarkReport) -> list[dict[str, Any]]:
    """The performance targets, each with the measured median, the lowest and highest round, the required
    value and the verdict (`verdict`)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Spread, need: float, cell: str = "", lower_is_better: bool = False) -> None:
        out.append({"target": name, "cell": cell, "value": value.median, "low": value.low, "high": value.high,
                    "need": need, "lower_is_better": lower_is_better,
                    "verdict": verdict(value, need, lower_is_better=lower_is_better)})

    def key(c: CellResult) -> tuple[int, int, int, int]:
        return c.batch, c.frames, c.size, c.workers

    def paired(a: CellResult, b: CellResult) -> Spread:
        return Spread.of([x / y for x, y in zip(a.round_clips_per_s, b.round_clips_per_s, strict=True)])

    by = {(c.format, *key(c)): c for c in report.cells}
    for c in report.cells:
        where = f"{c.batch}x{c.frames}x{c.size}, {c.workers}w"
        if c.format == "hdf5" and c.workers == 1 and c.ratio is not None:
            add("hdf5 raw / decode (decodes nothing)", c.ratio, 1.0, where)
        if c.format != "sqlite":
            continue
        if c.workers == 1 and c.ratio is not None:
            add("sqlite / decode (store adds <= 5%)", c.ratio, 0.95, where)
        jpg, video = by.get(("jpg", *key(c))), by.get(("video", *key(c)))
        if jpg:
            add("sqlite / jpg", paired(c, jpg), 1.0, where)
        if video and c.frames >= 16:
            add("sqlite / video (16-frame clips)", paired(c, video), 3.0, where)
    r = report.reduced_decode
    for denom in (2, 4):
        if f"1/{denom}_speedup" in r:
            add(f"reduced-scale decode, 1/{denom} (full / reduced time)",
                Spread(r[f"1/{denom}_speedup"], r[f"1/{denom}_speedup_low"], r[f"1/{denom}_speedup_high"]), 1.2)
    s = report.scaling
    if s:
        add("2 workers / 1 worker", Spread(s["speedup"], s["speedup_low"], s["speedup_high"]), 1.7,
            f"{s['shape']}, {s['cpus']} CPUs")
    if report.rss:
        g = report.rss["growth_mb"]
        add(f"worker private RSS growth over {report.rss['clips']} clips (MB)", Spread(g, g, g), 50.0,
            lower_is_better=True)
    return out
