"""`vidnet benchmark-io`: end-to-end clip loading speed of the frame store against other formats.

What is measured. Every format goes through the same pipeline: `VideoClipDataset` (same `RandomClip`
sampler and seed, so the same videos and frames), a transform that resizes the short side to S and takes
the centre S x S crop, uint8 tensors, a real ``torch.utils.data.DataLoader`` (same shuffled order) with
``--workers`` processes. Only the frame reading differs:

* ``sqlite``: the dataset's frames.db stores (one SQL statement per clip, per-worker LRU of connections);
* ``jpg``: a folder per video of the very same JPEG bytes (``frame_00001.jpg``...), one file read per frame;
* ``hdf5``: one ``.h5`` file per video holding the decoded frames as raw uint8 ``[T, H, W, 3]``
  (one chunk per frame, uncompressed), files kept open in the same per-worker LRU as the stores;
* ``video``: an H.264 file per video decoded with PyAV, seeking to the key frame before the clip
  (`vidnet.data.video.read_video_frames`). By default the stored frames are re-encoded in the scratch
  folder (libx264, CRF 18, preset veryfast, libx264's default key-frame interval of 250 frames, i.e. one key
  frame per sample video), so every format holds the same frames; ``--videos DIR`` decodes the dataset's
  own sources instead (index.csv ``source`` column, relative to DIR), whose frames are those the store
  was made from when conversion kept every frame;
* ``decode``: the same JPEG bytes already in memory (loaded before the workers start), so only decoding,
  resizing and batching remain: the physical limit of a JPEG store.

JPEG formats use the same reduced-scale DCT decode rule (`vidnet.data.dataset.decode_size`).

Timing. Each cell's loaders (one per format, persistent workers) first run a short warm-up epoch of one
batch per worker (worker start, imports, first opens), consumed to the end so that no work is left running.
Then every format runs ``repeat`` timed epochs, formats interleaved, and the best epoch counts (the one
least disturbed by other processes). An epoch is timed from the moment its iterator exists to the arrival
of its last batch: every clip is produced inside the interval (never the dequeue of a batch prefetched
before the clock started), and the number of batches is a multiple of the worker count so that every
worker produces the same number of whole batches. The same indices are drawn in every epoch and format.

Figures: clips/s, frames/s (clips/s x T), MB/s (frames/s x the format's stored bytes per frame: how fast
the storage must deliver), bytes on disk per video, and each format's ratio to ``decode`` in the same
cell. Also measured: reduced-scale decode against full decode + resize for the same output, worker RSS
growth over ``rss_clips`` clips (private resident memory from ``/proc/self/statm``), and 2 workers against 1.
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
    "DEFAULT_SHAPES",
    "Shape",
    "BenchmarkOptions",
    "CellResult",
    "BenchmarkReport",
    "parse_shape",
    "run_benchmark",
    "rss_bytes",
]

log = get_logger(__name__)

FORMATS = ("sqlite", "jpg", "video", "hdf5", "decode")
Shape = tuple[int, int, int]
"""(batch size, frames per clip, output side)."""
DEFAULT_SHAPES: tuple[Shape, ...] = ((1536, 4, 80), (384, 8, 112), (96, 16, 158), (48, 16, 224))
"""The clip shapes the original reported (batch, frames, size)."""


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


@dataclass
class BenchmarkOptions:
    """Options of ``vidnet benchmark-io``.

    Attributes:
        shapes: (batch, frames, size) cells to measure.
        workers: DataLoader worker counts (0 = in the main process).
        formats: formats to compare (see `FORMATS`); ``decode`` is the reference of every ratio.
        batches: timed batches per cell; None derives it from ``max_clips``.
        max_clips: clips timed per cell when ``batches`` is None (at least one batch).
        repeat: timed rounds per cell, formats interleaved; the best round counts (the least disturbed by
            other processes on the machine).
        scratch: folder for the comparison formats (kept, and reused by later runs); None: a temporary one.
        videos: decode the dataset's source videos from here instead of re-encoding the stored frames.
        split: only videos of this split (None: all).
        seed: sampling seed (the same for every format).
        rss_clips: clips loaded by one worker for the memory measurement (0 skips it).
        scaling: measure sqlite with 2 workers against 1 (the shape ``scaling_shape``).
        scaling_shape: the shape of the scaling and memory measurements.
        max_open: per-worker open stores/files (the dataset's ``max_open``; None: its default, every video
            within the open-file limit).
        frame_interval: the `RandomClip` frame step (an int, a tuple to draw from, or a range). 2 by default:
            the original's training interval for UCF-101/HMDB-51 (the smallest of its presets; Kinetics used
            4-6). Only ``video`` depends on it: it decodes every frame between the clip's first and last.
    """

    shapes: Sequence[Shape] = DEFAULT_SHAPES
    workers: Sequence[int] = (1,)
    formats: Sequence[str] = FORMATS
    batches: int | None = None
    max_clips: int = 512
    repeat: int = 3
    scratch: Path | None = None
    videos: Path | None = None
    split: str | None = None
    seed: int = 0
    rss_clips: int = 2000
    scaling: bool = True
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
    """One format at one shape and worker count."""

    format: str
    batch: int
    frames: int
    size: int
    workers: int
    clips: int
    seconds: float
    clips_per_s: float
    frames_per_s: float
    mb_per_s: float
    bytes_per_video: float
    ratio_to_decode: float | None = None


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
    cells: list[CellResult] = field(default_factory=list)
    reduced_decode: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    scaling: dict[str, float] = field(default_factory=dict)
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


class _Hdf5Dataset(VideoClipDataset):
    def __init__(self, root: Path, *, folder: Path, **kw: Any) -> None:
        super().__init__(root, **kw)
        self.folder = folder
        self.files = _ProcessLRU(self.max_open, _open_h5)

    def read_frames(self, index: int, frames: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        row = self.rows[index]
        unique = np.unique(frames)  # h5py selections must be increasing
        data = self.files.get(self.folder / f"{row.path}.h5")["video"][unique.tolist()]
        return data[np.searchsorted(unique, frames)]


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


def _make_hdf5(args: tuple[Path, Path]) -> int:
    import h5py

    store_dir, out = args
    if not out.is_file():
        with FrameStore(store_dir) as store:
            frames = store.get_frames(range(len(store)))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("video", data=frames, chunks=(1, *frames.shape[1:]))
        os.replace(tmp, out)
    return out.stat().st_size


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


def _build(kind: str, jobs: list[tuple[Path, Path]], processes: int) -> list[int]:
    fn = {"jpg": _make_jpg, "hdf5": _make_hdf5, "video": _make_video}[kind]
    if processes <= 1 or len(jobs) < 4:
        return [fn(j) for j in jobs]
    with process_pool(processes) as pool:
        return pool.map(fn, jobs, chunksize=4)


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


def _measure(datasets: dict[str, VideoClipDataset], shape: Shape, workers: int, opts: BenchmarkOptions
             ) -> dict[str, tuple[int, float]]:
    """Clips and best time of each format over ``opts.repeat`` interleaved rounds (after a warm-up epoch)."""
    batch = shape[0]
    timed = _timed_batches(batch, workers, opts)
    loaders = {fmt: _loader(ds, batch, workers, batch * max(1, workers), opts.seed) for fmt, ds in datasets.items()}
    # Warm-up: one whole short epoch per loader (workers start, imports, first opens), so no work is left
    # running in the background when the timed epochs start.
    for loader in loaders.values():
        for _ in loader:
            pass
        loader.sampler.n = batch * timed  # type: ignore[attr-defined]
    best: dict[str, tuple[int, float]] = {}
    for _ in range(opts.repeat):
        for fmt, loader in loaders.items():
            it = iter(loader)  # a persistent loader's reset happens here, outside the clock
            t0 = time.perf_counter()
            n = sum(b["clip"].shape[0] for b in it)
            seconds = time.perf_counter() - t0
            if fmt not in best or seconds < best[fmt][1]:
                best[fmt] = (n, seconds)
    del loaders, it
    gc.collect()  # shuts the persistent workers down before the next cell
    return best


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


def _measure_reduced(ds: VideoClipDataset, blobs: dict[str, list[bytes]], stored: tuple[int, int], seed: int,
                     frames: int = 1500) -> dict[str, float]:
    """Per-frame decode + transform time for an output half (and a quarter) the stored size."""
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
        times = {}
        for name, ms in (("full", None), ("reduced", min_size)):
            mh, mw = ms or (0, 0)
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                for blob in sample:
                    transform(decode_jpeg(blob, min_height=mh, min_width=mw)[None])
                best = min(best, time.perf_counter() - t0)
            times[name] = best / len(sample) * 1e6
        out[f"1/{denom}_full_us"] = times["full"]
        out[f"1/{denom}_reduced_us"] = times["reduced"]
        out[f"1/{denom}_speedup"] = times["full"] / times["reduced"]
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
                if "decode" in opts.formats or "jpg" in opts.formats:
                    blobs[row.path] = store.get_bytes(range(len(store)))
                frames_total += len(store)
        except VidnetError as err:
            raise VidnetError(f"{path}: cannot benchmark a dataset with a bad store ({err})") from None
        store_bytes += path.stat().st_size
    sizes = set(stored.values())
    stored_size = max(sizes, key=lambda hw: list(stored.values()).count(hw))

    tmp = None
    scratch = opts.scratch
    if scratch is None and any(f in opts.formats for f in ("jpg", "hdf5", "video")):
        tmp = scratch = Path(tempfile.mkdtemp(prefix="vidnet-bench-"))
    processes = max(1, min(os.cpu_count() or 1, 8))
    disk: dict[str, float] = {"sqlite": store_bytes / len(rows),
                              "decode": sum(map(len, (b for v in blobs.values() for b in v))) / len(rows)}
    video_source = "-"
    try:
        extra: dict[str, dict[str, Any]] = {}
        for kind in ("jpg", "hdf5", "video"):
            if kind not in opts.formats:
                continue
            assert scratch is not None
            if kind == "video" and opts.videos is not None:
                files = {}
                for row in rows:
                    src = row.extra.get("source")
                    if not src or not (opts.videos / src).is_file():
                        raise UsageError(f"{opts.videos}: no source video for {row.path} (index.csv source={src!r})")
                    files[row.path] = opts.videos / src
                disk["video"] = sum(p.stat().st_size for p in files.values()) / len(rows)
                extra["video"] = {"files": files}
                video_source = f"source videos in {opts.videos}"
                continue
            stage(f"{kind} copy of {len(rows)} videos in {scratch / kind} (writing the ones not there yet)")
            suffix = {"jpg": "", "hdf5": ".h5", "video": ".mp4"}[kind]
            jobs = [(root / r.path, scratch / kind / f"{r.path}{suffix}") for r in rows]
            disk[kind] = sum(_build(kind, jobs, processes)) / len(rows)
            if kind == "jpg":
                extra[kind] = {"folder": scratch / kind}
            elif kind == "hdf5":
                extra[kind] = {"folder": scratch / kind}
            else:
                extra[kind] = {"files": {r.path: j[1] for r, j in zip(rows, jobs, strict=True)}}
                video_source = "stored frames re-encoded to H.264 (libx264 CRF 18, veryfast, key-frame interval 250)"

        classes = {"sqlite": _SqliteDataset, "jpg": _JpgDataset, "hdf5": _Hdf5Dataset, "video": _VideoDataset,
                   "decode": _DecodeDataset}
        kwargs = {**extra, "decode": {"blobs": blobs}}

        def make(cls, t: int, s: int, fmt: str = "sqlite") -> VideoClipDataset:
            return cls(root, split=opts.split, num_frames=t, size=(s, s), sampler=RandomClip(opts.frame_interval),
                       transform=ClipEval(EvalConfig(resize_short=s, crop_size=s)), seed=opts.seed,
                       max_open=opts.max_open, **kwargs.get(fmt, {}))

        report = BenchmarkReport(str(root), len(rows), frames_total / len(rows), stored_size, video_source,
                                 max_open=base.max_open, frame_interval=format_interval(opts.frame_interval))
        per_frame = {f: disk[f] / (frames_total / len(rows)) for f in disk}
        for shape in opts.shapes:
            for workers in opts.workers:
                stage(f"{'x'.join(map(str, shape))} with {workers} worker(s): {', '.join(opts.formats)}")
                datasets = {fmt: make(classes[fmt], shape[1], shape[2], fmt) for fmt in opts.formats}
                for fmt, (clips, seconds) in _measure(datasets, shape, workers, opts).items():
                    cps = clips / seconds
                    cell = CellResult(fmt, *shape, workers, clips, seconds, cps, cps * shape[1],
                                      cps * shape[1] * per_frame[fmt] / 1e6, disk[fmt])
                    report.cells.append(cell)
                    if on_result:
                        on_result(cell)
        for cell in report.cells:
            ref = next((c for c in report.cells if c.format == "decode" and (c.batch, c.frames, c.size, c.workers)
                        == (cell.batch, cell.frames, cell.size, cell.workers)), None)
            cell.ratio_to_decode = cell.clips_per_s / ref.clips_per_s if ref else None

        if blobs:
            stage("reduced-scale decode against full decode + resize")
            report.reduced_decode = _measure_reduced(base, blobs, stored_size, opts.seed)
        if opts.scaling:
            have = {c.workers: c for c in report.cells if c.format == "sqlite"
                    and (c.batch, c.frames, c.size) == tuple(opts.scaling_shape)}
            for w in (1, 2):
                if w not in have:
                    stage(f"sqlite {'x'.join(map(str, opts.scaling_shape))} with {w} worker(s) (scaling)")
                    ds = make(_SqliteDataset, *opts.scaling_shape[1:])
                    clips, seconds = _measure({"sqlite": ds}, opts.scaling_shape, w, opts)["sqlite"]
                    have[w] = CellResult("sqlite", *opts.scaling_shape, w, clips, seconds, clips / seconds, 0, 0, 0)
            report.scaling = {"shape": "x".join(map(str, opts.scaling_shape)), "1_worker_clips_per_s":
                              have[1].clips_per_s, "2_workers_clips_per_s": have[2].clips_per_s,
                              "speedup": have[2].clips_per_s / have[1].clips_per_s, "cpus": os.cpu_count() or 1}
        if opts.rss_clips:
            stage(f"worker memory over {opts.rss_clips} clips")
            report.rss = _measure_rss(make, opts.scaling_shape, opts.rss_clips, opts.seed)
        report.targets = _targets(report)
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _targets(report: BenchmarkReport) -> list[dict[str, Any]]:
    """The issue's performance targets, each as (name, measured value, required value, met)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, need: float, cell: str = "") -> None:
        out.append({"target": name, "cell": cell, "value": value, "need": need, "met": value >= need})

    def key(c: CellResult) -> tuple[int, int, int, int]:
        return c.batch, c.frames, c.size, c.workers

    by = {(c.format, *key(c)): c for c in report.cells}
    for c in report.cells:
        if c.format != "sqlite":
            continue
        where = f"{c.batch}x{c.frames}x{c.size}, {c.workers}w"
        if c.workers == 1 and c.ratio_to_decode is not None:
            add("sqlite / decode (store adds <= 5%)", c.ratio_to_decode, 0.95, where)
        jpg, video = by.get(("jpg", *key(c))), by.get(("video", *key(c)))
        if jpg:
            add("sqlite / jpg", c.clips_per_s / jpg.clips_per_s, 1.0, where)
        if video and c.frames >= 16:
            add("sqlite / video (16-frame clips)", c.clips_per_s / video.clips_per_s, 3.0, where)
    for denom in (2, 4):
        if f"1/{denom}_speedup" in report.reduced_decode:
            add(f"reduced-scale decode, 1/{denom} (full / reduced time)", report.reduced_decode[f"1/{denom}_speedup"],
                1.2)
    if report.scaling:
        add("2 workers / 1 worker", report.scaling["speedup"], 1.7, f"{report.scaling['shape']}, "
            f"{report.scaling['cpus']} CPUs")
    if report.rss:
        out.append({"target": f"worker private RSS growth over {report.rss['clips']} clips (MB)", "cell": "",
                    "value": report.rss["growth_mb"], "need": 50.0, "met": report.rss["growth_mb"] < 50})
    return out
