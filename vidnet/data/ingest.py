"""``vidnet convert``: turn a dataset of videos into one frames.db store per video plus a dataset index.

Input layouts (detected, or forced with ``layout``):

* ``videos``: ``SRC/<label>/<video>.<ext>`` for the extensions in :data:`VIDEO_EXTENSIONS`;
* ``frames``: ``SRC/<label>/<video_id>/*.jpg|*.jpeg|*.png`` (pre-extracted frames; JPEG bytes are kept
  as they are when no resize is asked);
* ``hdf5``: ``SRC/<label>/<video>.h5|.hdf5`` each holding a ``video`` dataset ``[T, H, W, 3]`` uint8 RGB;
* ``db``: an existing dataset2database tree, ``SRC/<label>/<video_id>/frames.db``.

The layout is detected over every class folder: stray folders (without frames), hidden files and links that
loop are ignored and reported.

Labels and splits come from an index (``--index FILE``, or ``SRC/index.csv`` when it exists, as written by
``vidnet sample`` and ``vidnet prepare``: its ``source`` column names each video relative to ``SRC``);
otherwise from the class folders, with an optional deterministic validation split. Ids and labels are
checked where the index is read (`vidnet.data.index.check_name`); a source outside ``SRC`` is refused unless
``allow_outside_source``; every store is written inside ``DST``.

The run is resumable and atomic: each store is written to a temporary file and renamed into place only when
complete; a re-run skips videos whose store is complete and made from the same source (same size), and
redoes the rest. Bad inputs never stop the run: each becomes a row of ``DST/convert-errors.csv``. One run at
a time writes into a ``DST`` (an advisory lock). Whatever happens to the run, ``DST/index.csv`` lists the
complete stores in ``DST`` and ``DST/labels.json`` keeps its ids (`vidnet.data.index.refresh_index`).

On a cluster, ``shard`` converts one part of the videos (`vidnet.data.shards`): shards share DST (its lock is
taken shared, each shard holds a lock of its own) and write part files instead of the index; `merge_shards`
then builds the index, labels and errors of DST from the parts, like a single run would have.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from vidnet._io import (
    atomic_write_json,
    atomic_write_text,
    dir_lock,
    host_name,
    inside,
    list_temporaries,
    remove_orphan_temporaries,
)
from vidnet._log import get_logger
from vidnet._mp import process_pool
from vidnet.data.index import (
    IndexRow,
    IndexUpdate,
    assign_label_ids,
    check_name,
    format_index,
    read_index,
    read_labels,
    refresh_index,
    video_dir_name,
)
from vidnet.data.shards import Shard, check_parts, part_name, read_parts, shard_of, write_summary_part
from vidnet.data.splits import DEFAULT_VAL_FRACTION, stratified_split
from vidnet.data.store import (
    STORE_NAME,
    FrameStore,
    StoreMeta,
    StoreWriter,
    check_frame_size,
    decode_jpeg,
    encode_jpeg,
    encode_jpeg_planes,
    is_complete_store,
    jpeg_size,
    read_n_frames_file,
    write_n_frames_file,
)
from vidnet.data.video import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    VideoInfo,
    Yuv420,
    frame_to_rgb,
    frame_to_yuv420,
    iter_decoded_frames,
    probe_video,
)
from vidnet.errors import CorruptFrameError, StoreError, UsageError, VidnetError, plain_reason

__all__ = ["ConvertOptions", "ConvertSummary", "Job", "JobResult", "discover", "convert_dataset", "convert_one",
           "reindex_dataset", "merge_shards"]

log = get_logger(__name__)

Layout = Literal["auto", "videos", "frames", "hdf5", "db"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
HDF5_EXTENSIONS = (".h5", ".hdf5")
ERRORS_NAME = "convert-errors.csv"
_TEMP_NAME = re.compile(r"^\..*\.tmp(\.\w+)?$")


@dataclass
class ConvertOptions:
    """Options of ``vidnet convert``.

    Attributes:
        layout: input layout; ``auto`` detects it from the content of every class folder.
        short_side: resize so the shorter side has this many pixels, keeping the aspect ratio (None keeps
            the size). Smaller stores decode faster: a 128-pixel store decodes about 3x faster than a
            240-pixel one, at the cost of detail for crops larger than the short side.
        quality: JPEG quality (1-100) for frames that are (re-)encoded.
        fps: resample videos to this frame rate (None keeps every frame); videos only.
        workers: parallel processes (default: all cores).
        overwrite: redo stores that are already complete.
        strict: exit non-zero when any input fails.
        limit: convert at most this many videos (after sorting), for quick trials.
        index: an index file naming the videos (``source`` column) with labels and splits.
        val_fraction: without an index, put this fraction of each class in split ``val`` and the rest in
            ``train`` (`vidnet.data.splits.stratified_split`: per class, deterministic; default 0.2).
        in_place: ``db`` layout only: validate the stores where they are and add ``n_frames`` and the index
            files to SRC instead of writing a new tree.
        checksum: record a sha256 of each source file in the store's meta.
        allow_outside_source: read sources an index names outside SRC (absolute paths, ``..``); off, such
            a row is an error.
        wait: when another run holds DST, wait for it instead of failing.
        shard: convert only this shard's videos and write its part files (`vidnet.data.shards`), not the index.
    """

    layout: Layout = "auto"
    short_side: int | None = None
    quality: int = 90
    fps: float | None = None
    workers: int = 0
    overwrite: bool = False
    strict: bool = False
    limit: int | None = None
    index: Path | None = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    in_place: bool = False
    checksum: bool = True
    allow_outside_source: bool = False
    wait: bool = False
    shard: Shard | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("auto", "videos", "frames", "hdf5", "db"):
            raise UsageError(f"--layout must be one of auto, videos, frames, hdf5, db (got {self.layout!r})")
        if self.short_side is not None and self.short_side < 8:
            raise UsageError(f"--short-side must be at least 8 pixels (got {self.short_side})")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100 (got {self.quality})")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"--fps must be positive (got {self.fps})")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1 (got {self.limit})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.workers <= 0:
            self.workers = os.cpu_count() or 1
        if self.shard is not None and self.in_place:
            raise UsageError("--shard and --in-place do not go together (--in-place only validates stores)")

    def store_options(self) -> dict:
        """The options that decide which videos a run lists and what their stores hold: the shards of one
        conversion must agree on them."""
        return {"layout": self.layout, "short_side": self.short_side, "quality": self.quality, "fps": self.fps,
                "limit": self.limit, "index": str(self.index) if self.index else None,
                "val_fraction": self.val_fraction, "checksum": self.checksum}


@dataclass
class Job:
    """One video to convert.

    Attributes:
        label: class name.
        video_id: the video's id (file stem or folder name).
        source: the file or folder to read.
        kind: ``videos``, ``frames``, ``hdf5`` or ``db``.
        split: split value for the index.
        time_start: time slice start (index input only).
        time_end: time slice end.
        extra: further index columns to carry over.
    """

    label: str
    video_id: str
    source: Path
    kind: str
    split: str = ""
    time_start: float | None = None
    time_end: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dir_name(self) -> str:
        return video_dir_name(self.video_id, self.time_start, self.time_end)

    def rel_dir(self) -> str:
        """The store's folder relative to DST: ``<label>/<dir_name>`` (both checked by `check_name`)."""
        return f"{self.label}/{self.dir_name}"

    def row(self, n_frames: int = 0, path: str = "") -> IndexRow:
        """The job's index row."""
        return IndexRow(self.label, self.video_id, self.time_start, self.time_end, self.split, n_frames, path,
                        dict(self.extra))


@dataclass
class JobResult:
    """What converting one video produced.

    Attributes:
        job: the job.
        n_frames: frames stored (0 on failure).
        skipped: the store was already complete.
        error: why the video failed (no store written), or None.
        notes: warnings for a store that was written (partial decode, lying header, ...).
        seconds: wall time spent.
    """

    job: Job
    n_frames: int = 0
    skipped: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ConvertSummary:
    """Totals of a conversion run."""

    total: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    warnings: int = 0
    frames: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    rows: list[IndexRow] = field(default_factory=list)  # the index now in DST
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, severity, reason)
    new_labels: list[str] = field(default_factory=list)  # labels that got an id in this run
    shards: int = 0  # a merge: how many shards it merged


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _kind_of(path: Path) -> str | None:
    """``videos``, ``hdf5``, ``db`` or ``frames`` (a folder holding at least one image), else None."""
    if path.is_file():
        ext = path.suffix.lower()
        if ext in VIDEO_EXTENSIONS:
            return "videos"
        if ext in HDF5_EXTENSIONS:
            return "hdf5"
        return None
    if path.is_dir():
        if (path / STORE_NAME).is_file():
            return "db"
        try:
            with os.scandir(path) as it:
                if any(e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".") for e in it):
                    return "frames"
        except OSError:
            return "frames"  # unreadable: listed, then reported as such
    return None


# --------------------------------------------------------------------------------------------- discovery


def discover(src: Path, opts: ConvertOptions, problems: list[tuple[str, str, str]], *,
             exclude: Path | None = None) -> list[Job]:
    """List the videos to convert, in a deterministic order, recording unusable entries in ``problems``.

    ``exclude`` is a folder never taken for a class folder (DST, when it lies inside SRC).
    """
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder")
    index_path = _index_path(src, opts)
    if index_path is not None:
        jobs = _jobs_from_index(src, index_path, opts, problems)
    else:
        jobs = _jobs_from_folders(src, opts, problems, exclude)
    # Duplicate ids: a video must be identifiable by its folder name within the dataset.
    seen: dict[str, Job] = {}
    unique = []
    for job in jobs:
        key = job.dir_name
        if key in seen:
            first = seen[key]
            problems.append((str(job.source), "error",
                             f"duplicate video id {key!r} (also {first.source}); kept the first"))
            continue
        seen[key] = job
        unique.append(job)
    if opts.limit:
        unique = unique[: opts.limit]
    return unique


def _index_path(src: Path, opts: ConvertOptions) -> Path | None:
    if opts.index is not None:
        return opts.index
    return src / "index.csv" if (src / "index.csv").is_file() else None


def _jobs_from_index(src: Path, index_path: Path, opts: ConvertOptions, problems) -> list[Job]:
    rows = read_index(index_path, problems=problems)  # bad ids, labels, paths and duplicate rows are problems
    log.info("taking videos, labels and splits from %s (%d rows)", index_path, len(rows))
    jobs = []
    for row in rows:
        if "source" in row.extra and not row.extra["source"]:
            # `vidnet prepare` leaves source empty for videos it did not find.
            problems.append((f"{row.label}/{row.dir_name}", "error", "missing: the index names no source file"))
            continue
        source_rel = row.extra.get("source") or row.path or f"{row.label}/{row.dir_name}"
        if not opts.allow_outside_source and inside(src, source_rel, resolve=False) is None:
            problems.append((source_rel, "error", f"source is outside {src} (pass --allow-outside-source to "
                                                  "read it)"))
            continue
        source = src / source_rel
        kind = _kind_of(source)
        if kind is None:
            # An index may name a video without its extension: try the known ones.
            matches = [p for p in sorted(source.parent.glob(glob.escape(source.name) + ".*"))
                       if _kind_of(p) in ("videos", "hdf5")]
            if matches:
                source, kind = matches[0], _kind_of(matches[0])
        if kind is None:
            reason = "not a video, frame folder or store" if source.exists() else "listed in the index but not found"
            problems.append((str(source), "error", reason))
            continue
        if opts.layout != "auto" and kind != opts.layout:
            problems.append((str(source), "error", f"is a {kind} input but --layout is {opts.layout}"))
            continue
        extra = {k: v for k, v in row.extra.items() if k != "source"}
        extra["source"] = source_rel
        jobs.append(Job(row.label, row.id, source, kind, row.split, row.time_start, row.time_end, extra))
    return jobs


def _detect_layout(src: Path, class_dirs: list[Path]) -> str:
    """The most common kind of input over every class folder (ties: videos, hdf5, frames, db)."""
    counts: Counter[str] = Counter()
    for d in class_dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue  # reported when the folder is listed for jobs
        for entry in entries:
            if not entry.name.startswith("."):
                kind = _kind_of(Path(entry.path))
                if kind:
                    counts[kind] += 1
    if not counts:
        raise UsageError(f"{src}: no videos, HDF5 files or frame folders found under its class folders")
    if counts.get("db") and counts.get("frames"):  # dataset2database trees may hold frame folders too
        counts["db"] += counts.pop("frames")
    order = ("videos", "hdf5", "frames", "db")
    kind = max(counts, key=lambda k: (counts[k], -order.index(k)))
    if len(counts) > 1:
        log.info("layout %s: %s", kind, ", ".join(f"{n} {k}" for k, n in counts.most_common()))
    return kind


def _jobs_from_folders(src: Path, opts: ConvertOptions, problems, exclude: Path | None = None) -> list[Job]:
    root = src
    # dataset2database trees are often <root>/jpg/<label>/<id>/frames.db.
    if not any(p.is_dir() and any(p.glob("*/" + STORE_NAME)) for p in src.iterdir()) and (src / "jpg").is_dir():
        root = src / "jpg"
    excluded = exclude.resolve() if exclude is not None else None
    class_dirs = []
    for p in sorted(root.iterdir(), key=lambda p: p.name):
        if p.name.startswith(".") or not p.is_dir():
            continue
        if excluded is not None and p.resolve() == excluded:
            continue  # DST inside SRC: its stores are no class folder
        reason = check_name(p.name, "label")
        if reason is not None:
            problems.append((str(p), "error", f"ignored: {reason}"))
            continue
        if not os.access(p, os.R_OK | os.X_OK):
            problems.append((str(p), "error", "class folder is not readable (permissions)"))
            continue
        class_dirs.append(p)
    if not class_dirs:
        raise UsageError(f"{src}: no class folders found (expected SRC/<label>/<video>)")
    layout = opts.layout if opts.layout != "auto" else _detect_layout(root, class_dirs)
    log.info("layout: %s (%d class folders under %s)", layout, len(class_dirs), root)
    jobs = []
    for d in class_dirs:
        try:
            entries = sorted(d.iterdir(), key=lambda p: _natural_key(p.name))
        except OSError as err:
            problems.append((str(d), "error", f"cannot list folder ({err.strerror})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                if entry.name not in (".DS_Store", ".directory") and not _TEMP_NAME.match(entry.name):
                    problems.append((str(entry), "warning", "ignored: hidden"))
                continue
            kind = _kind_of(entry)
            if kind is None:
                if entry.is_dir() or entry.is_symlink():
                    what = "a link that loops or leads nowhere" if not entry.is_dir() else "a folder without frames"
                    problems.append((str(entry), "warning", f"ignored: {what}"))
                elif entry.is_file() and entry.suffix.lower() not in (".txt", ".csv", ".json", ".md"):
                    problems.append((str(entry), "warning", "ignored: not a video, HDF5 file or folder"))
                continue
            if layout == "frames" and kind == "db":
                kind = "db"
            elif kind != layout:
                problems.append((str(entry), "warning", f"ignored: a {kind} input in a {layout} dataset"))
                continue
            if entry.is_dir() and not os.access(entry, os.R_OK | os.X_OK):
                problems.append((str(entry), "error", "folder is not readable (permissions)"))
                continue
            video_id = entry.stem if entry.is_file() else entry.name
            reason = check_name(video_id, "id")
            if reason is not None:
                problems.append((str(entry), "error", reason))
                continue
            jobs.append(Job(d.name, video_id, entry, kind, extra={"source": str(entry.relative_to(src))}))
    splits = stratified_split(((job.label, job.video_id) for job in jobs), opts.val_fraction)
    for job in jobs:
        job.split = splits[(job.label, job.video_id)]
    return jobs


# --------------------------------------------------------------------------------------------- one video


def target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(width, height)`` with the shorter side scaled to ``short_side`` (unchanged when None)."""
    if not short_side or min(width, height) == short_side:
        return width, height
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def resize_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(width, height)``: area averaging when shrinking, bilinear when enlarging."""
    h, w = rgb.shape[:2]
    if (w, h) == size:
        return rgb
    interp = cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp)


def resize_yuv420(planes: Yuv420, size: tuple[int, int]) -> Yuv420:
    """Resize 4:2:0 planes to ``(width, height)`` with `resize_frame` (chroma to the rounded-up half).

    When the new width or height is odd, half of it is not a whole number of chroma samples: resizing the
    chroma straight to the rounded-up half would stretch it by up to one pixel against the luma (measured:
    -1.8 dB on a 64x48 -> 60x45 frame). There the chroma is resized to the full new size, with the luma's
    scale, and averaged 2x2 (the last row or column repeated), as the JPEG encoder does with RGB input.
    """
    w, h = size
    half = ((w + 1) // 2, (h + 1) // 2)
    if (w % 2 == 0 and h % 2 == 0) or planes.y.shape[:2] == (h, w):
        return Yuv420(resize_frame(planes.y, size), resize_frame(planes.u, half), resize_frame(planes.v, half),
                      planes.full_range)

    def chroma(plane: np.ndarray) -> np.ndarray:
        full = cv2.copyMakeBorder(resize_frame(plane, size), 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        return cv2.resize(full, half, interpolation=cv2.INTER_AREA)

    return Yuv420(resize_frame(planes.y, size), chroma(planes.u), chroma(planes.v), planes.full_range)


def encode_video_frame(frame: av.VideoFrame, size: tuple[int, int], quality: int) -> bytes:
    """One decoded frame as JPEG bytes of ``(width, height)``.

    A 4:2:0 frame (`frame_to_yuv420`) is resized plane by plane and its planes are encoded as they are: the
    JPEG file is YCbCr 4:2:0 too, so no colour conversion is made. Any other frame goes decode -> RGB ->
    resize -> encode (`frame_to_rgb`, `resize_frame`, `encode_jpeg`), and so does an odd output size:
    libjpeg-turbo's encoder from planes loses the last row's colour at an odd height (measured on a 60x45
    frame at quality 75: 29 dB on that row, 1.2 dB less over the frame than from RGB), and at an odd width it
    reads uninitialised memory past the planes (the same frame encoded twice gave different bytes).
    """
    planes = frame_to_yuv420(frame) if size[0] % 2 == 0 and size[1] % 2 == 0 else None
    if planes is None:
        return encode_jpeg(resize_frame(frame_to_rgb(frame), size), quality)
    return encode_jpeg_planes(*resize_yuv420(planes, size).to_jfif(), quality=quality)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _frames_of_video(job: Job, opts: ConvertOptions, info: VideoInfo, notes: list[str],
                     threads: int = 1) -> Iterator[av.VideoFrame]:
    n = 0
    try:
        cut = job.extra.get("cut") == "1" and job.time_start is not None
        span = (job.time_start, job.time_end) if cut else (None, None)
        for frame in iter_decoded_frames(job.source, fps=opts.fps, threads=threads, start=span[0], end=span[1]):
            n += 1
            yield frame
    except VideoDecodeError as err:
        if n == 0:
            raise
        reason = str(err).removeprefix(f"{job.source}: ")
        notes.append(f"partial: {reason}; kept the {n} frames that decoded")
    if n and info.header_frames and not opts.fps and not cut and info.header_frames != n:
        notes.append(f"header says {info.header_frames} frames, {n} decoded (the decoder's count is used)")


def _frames_of_hdf5(job: Job, notes: list[str]) -> Iterator[np.ndarray]:
    import h5py

    try:
        f = h5py.File(job.source, "r")
    except OSError as err:
        raise VidnetError(f"{job.source}: not a readable HDF5 file ({err})") from None
    with f:
        if "video" not in f:
            raise VidnetError(f"{job.source}: no 'video' dataset (found: {', '.join(f.keys()) or 'nothing'})")
        ds = f["video"]
        if not isinstance(ds, h5py.Dataset):
            raise VidnetError(f"{job.source}: 'video' is a group, not a [T, H, W, 3] uint8 dataset")
        if ds.ndim != 4 or ds.shape[-1] != 3 or ds.dtype != np.uint8:
            raise VidnetError(f"{job.source}: 'video' must be [T, H, W, 3] uint8, is {ds.shape} {ds.dtype}")
        try:
            check_frame_size(ds.shape[1], ds.shape[2])
        except CorruptFrameError as err:
            raise VidnetError(f"{job.source}: {err}") from None
        for start in range(0, ds.shape[0], 64):
            yield from ds[start : start + 64]


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _write_frames_folder(job: Job, opts: ConvertOptions, writer: StoreWriter, notes: list[str]) -> None:
    files = _image_files(job.source)
    if not files:
        raise VidnetError(f"{job.source}: no .jpg/.png frames in the folder")
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as err:
            notes.append(f"{path.name}: unreadable ({err.strerror}), skipped")
            continue
        is_jpeg = data[:2] == b"\xff\xd8"
        try:
            if is_jpeg and not opts.short_side:
                height, width = jpeg_size(data)
                check_frame_size(height, width)
                writer.add(data, width, height)  # keep the JPEG bytes as they are
                continue
            rgb = _decode_image(data)
        except CorruptFrameError as err:
            notes.append(f"{path.name}: {err}, skipped")
            continue
        if rgb is None:
            notes.append(f"{path.name}: not a decodable image, skipped")
            continue
        size = target_size(rgb.shape[1], rgb.shape[0], opts.short_side)
        writer.add_rgb(resize_frame(rgb, size), opts.quality)


def _decode_image(data: bytes) -> np.ndarray | None:
    """RGB of a JPEG or PNG frame, None if it does not decode; `CorruptFrameError` above the size limit."""
    if data[:2] == b"\xff\xd8":
        try:
            return decode_jpeg(data)
        except ValueError:
            return None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:  # IHDR: width, height (big-endian)
        check_frame_size(int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"))
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_from_store(job: Job, opts: ConvertOptions, writer: StoreWriter, notes: list[str]) -> float:
    with FrameStore(job.source) as store:
        n = len(store)
        for start in range(0, n, 64):
            idx = np.arange(start, min(n, start + 64))
            for i, blob in zip(idx.tolist(), store.get_bytes(idx), strict=True):
                try:
                    height, width = jpeg_size(blob)
                    check_frame_size(height, width)
                    if opts.short_side:
                        rgb = decode_jpeg(blob)
                        writer.add_rgb(resize_frame(rgb, target_size(width, height, opts.short_side)), opts.quality)
                    else:
                        writer.add(blob, width, height)
                except (ValueError, CorruptFrameError) as err:
                    notes.append(f"frame {i}: {err}, skipped")
        return store.meta.fps


def convert_one(job: Job, dst: Path, opts: ConvertOptions, threads: int = 1) -> JobResult:
    """Convert one video into ``dst/<label>/<video_id>/frames.db`` (runs in a worker process); ``threads``:
    decoder threads for a video file."""
    t0 = time.perf_counter()
    result = JobResult(job)
    folder = inside(dst, job.rel_dir())
    if folder is None or folder.parent.parent != dst.resolve():
        result.error = f"{job.rel_dir()} would be written outside {dst} (a symbolic link?): refused"
        return result
    try:
        size = job.source.stat().st_size if job.source.is_file() else 0
        if not opts.overwrite:
            meta = is_complete_store(folder)
            if meta is not None and meta.source_size == size:
                if read_n_frames_file(folder) != meta.n_frames:
                    write_n_frames_file(folder, meta.n_frames)
                result.skipped, result.n_frames = True, meta.n_frames
                result.notes = [n for n in meta.notes]
                return result
        notes: list[str] = []
        fps = 0.0
        with StoreWriter(folder, job.dir_name) as writer:
            if job.kind == "videos":
                info = probe_video(job.source)
                fps = opts.fps or info.fps
                target = None
                last: tuple[av.VideoFrame | None, bytes] = (None, b"")
                for frame in _frames_of_video(job, opts, info, notes, threads):
                    if target is None:
                        target = target_size(frame.width, frame.height, opts.short_side)
                    if frame is not last[0]:  # a frame repeated by --fps is encoded once
                        last = (frame, encode_video_frame(frame, target, opts.quality))
                    writer.add(last[1], *target)
            elif job.kind == "hdf5":
                target = None
                for rgb in _frames_of_hdf5(job, notes):
                    if target is None:
                        target = target_size(rgb.shape[1], rgb.shape[0], opts.short_side)
                    writer.add_rgb(resize_frame(rgb, target), opts.quality)
            elif job.kind == "frames":
                _write_frames_folder(job, opts, writer, notes)
            else:
                fps = _write_from_store(job, opts, writer, notes)
            if writer.n_frames == 0:
                raise VidnetError(f"{job.source}: no frame could be decoded")
            if writer.n_frames == 1:
                notes.append("single frame: every clip of this video repeats it")
            meta = StoreMeta(
                fps=fps,
                source_name=job.source.name,
                source_size=size,
                source_checksum=_sha256(job.source) if opts.checksum and job.source.is_file() else "",
                jpeg_quality=opts.quality if (job.kind not in ("frames", "db") or opts.short_side) else 0,
                notes=notes,
                row={"label": job.label, "id": job.video_id, "time_start": job.time_start,
                     "time_end": job.time_end, "split": job.split, "extra": job.extra},
            )
            writer.commit(meta)
            result.n_frames = writer.n_frames
            result.notes = notes
    except (VidnetError, StoreError) as err:
        result.error = str(err).removeprefix(f"{job.source}: ")
    except OSError as err:
        result.error = f"{err.filename or job.source}: {plain_reason(err)}"
    except Exception as err:  # a decoder or library failure must not stop the batch
        result.error = f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - t0
    return result


def _validate_in_place(job: Job, opts: ConvertOptions) -> JobResult:
    """``--in-place`` for dataset2database trees: check the store and write ``n_frames`` beside it."""
    result = JobResult(job)
    try:
        with FrameStore(job.source) as store:
            n = len(store)
            ends = sorted({0, n - 1})
            store.get_frames(ends)  # the first and last frames decode (``vidnet info`` checks all of them)
            result.notes = list(store.meta.notes)
        if read_n_frames_file(job.source) != n:
            write_n_frames_file(job.source, n)
        result.n_frames = n
    except (VidnetError, StoreError) as err:
        result.error = str(err)
    return result


# --------------------------------------------------------------------------------------------- the run


def _worker_init() -> None:
    cv2.setNumThreads(1)
    # The parent handles Ctrl-C and terminates the pool; workers die with their temporary files removed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_job(args: tuple[Job, Path, ConvertOptions, int]) -> JobResult:
    job, dst, opts, threads = args
    if opts.in_place:
        return _validate_in_place(job, opts)
    return convert_one(job, dst, opts, threads)


def _dispatch(jobs: list[Job], workers: int) -> list[tuple[Job, int]]:
    """The order in which to hand jobs to ``workers`` processes (cores), each with its decoder threads.

    Largest source first, so that the run does not end on one long video; and since a pool starts jobs in
    the order given, when job i starts about ``len(jobs) - i`` jobs remain: once fewer remain than workers,
    the others idle, so each of the last jobs gets ``workers // remaining`` decoder threads (the last all).
    """
    def size(job: Job) -> int:
        try:
            return job.source.stat().st_size if job.source.is_file() else 0
        except OSError:
            return 0

    ordered = sorted(jobs, key=size, reverse=True) if workers > 1 else jobs
    n = len(ordered)
    return [(job, max(1, workers // (n - i)) if workers > 1 else 1) for i, job in enumerate(ordered)]


def convert_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike | None,
    opts: ConvertOptions,
    on_progress: Callable[[JobResult, ConvertSummary], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ConvertSummary:
    """Convert a dataset; see the module docstring.

    Args:
        src: the input dataset.
        dst: the output root (``None`` or ``src`` with ``opts.in_place``).
        opts: options.
        on_progress: called in the parent after each video.
        on_start: called with the number of videos once they are listed.

    Returns:
        The summary. Whatever the outcome (interrupted too), ``DST/index.csv`` and ``DST/labels.json``
        describe the complete stores in DST (`refresh_index`: untouched when that did not change) and
        ``DST/convert-errors.csv`` lists this run's problems.

    Raises:
        UsageError: bad SRC or DST, or another run holds DST (exit 2).
        VidnetError: DST cannot be written.
    """
    src = Path(src)
    if opts.in_place:
        if dst is not None and Path(dst).resolve() != src.resolve():
            raise UsageError("--in-place writes into SRC: give no DST (or DST equal to SRC)")
        dst = src
    if dst is None:
        raise UsageError("missing DST (the output folder)")
    dst = Path(dst)
    if not opts.in_place and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: DST must differ from SRC (use --in-place for a dataset2database tree)")
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder")
    what = f"convert --shard {opts.shard}" if opts.shard else "convert"
    with open_dataset_root(dst, what, wait=opts.wait, clean=not opts.in_place, shard=opts.shard):
        return _convert_locked(src, dst, opts, on_progress, on_start)


@contextmanager
def open_dataset_root(root: Path, what: str, *, wait: bool = False, clean: bool = True,
                      shard: Shard | None = None) -> Iterator[Path]:
    """Create ``root`` if needed, hold its lock (`dir_lock`) for the block, and first remove the temporary
    files that processes now gone left there (those of live processes, other shards included, are kept).

    With ``shard``, the lock of ``root`` is taken shared (the other shards of the conversion run alongside;
    a plain conversion or a merge waits for all of them) and the shard's own lock exclusive (one run per shard).

    Raises:
        UsageError: ``root`` is a file, or another process holds the lock (exit 2; the message names it).
        VidnetError: ``root`` cannot be created or written (read-only file system, permissions).
    """
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: exists and is not a folder")
    with ExitStack() as stack:
        try:
            root.mkdir(parents=True, exist_ok=True)
            stack.enter_context(dir_lock(root, what=what, wait=wait, shared=shard is not None))
            if shard is not None:
                own = f".vidnet.shard-{shard.k}-of-{shard.n}.lock"
                stack.enter_context(dir_lock(root, what=what, wait=wait, name=own))
        except OSError as err:
            raise VidnetError(f"{root}: cannot write here ({plain_reason(err)})") from None
        if clean:
            stale = remove_orphan_temporaries(root)
            if stale:
                log.info("removed %d unfinished file(s) left by an interrupted run", stale)
        yield root


def _convert_locked(src: Path, dst: Path, opts: ConvertOptions, on_progress, on_start) -> ConvertSummary:
    summary = ConvertSummary()
    jobs = discover(src, opts, summary.problems, exclude=dst)
    if opts.in_place and any(j.kind != "db" for j in jobs):
        raise UsageError(f"{src}: --in-place needs a dataset2database tree (SRC/<label>/<id>/frames.db)")
    listed_labels = [j.label for j in jobs]
    shard_labels: dict[str, int] = {}
    if opts.shard is not None:
        # Label ids come from the whole listing, identical in every shard, before this shard converts anything.
        shard_labels = assign_label_ids(_base_labels(src, dst, opts) or {}, listed_labels)[0]
        jobs = [j for j in jobs if shard_of(j.rel_dir(), opts.shard.n) == opts.shard.k]
        write_summary_part(dst, opts.shard, finished=False, labels=shard_labels, options=opts.store_options(),
                           counts={})
        log.info("shard %s: %d of the %d videos listed", opts.shard, len(jobs), len(listed_labels))
    summary.total = len(jobs)
    # Inputs rejected while listing (duplicates, unreadable folders, missing index entries) count as failures.
    summary.failed = sum(sev == "error" for _, sev, _ in summary.problems)
    summary.warnings = sum(sev == "warning" for _, sev, _ in summary.problems)
    if on_start:
        on_start(len(jobs))
    t0 = time.perf_counter()
    results: list[JobResult] = []
    workers = 1 if opts.workers == 1 or len(jobs) <= 1 else min(opts.workers, len(jobs))
    args = [(job, dst, opts, threads) for job, threads in _dispatch(jobs, opts.workers)]

    def account(res: JobResult) -> None:
        results.append(res)
        if res.error:
            summary.failed += 1
            summary.problems.append((str(res.job.source), "error", res.error))
            log.warning("failed: %s: %s", res.job.source, res.error)
        else:
            summary.frames += res.n_frames
            if res.skipped:
                summary.skipped += 1
            else:
                summary.converted += 1
            for note in res.notes:
                summary.warnings += 1
                summary.problems.append((str(res.job.source), "warning", note))
                if not res.skipped:
                    log.warning("%s: %s", res.job.source, note)
        if on_progress:
            on_progress(res, summary)

    try:
        if workers == 1:
            for a in args:
                account(_run_job(a))
        else:
            with process_pool(workers, initializer=_worker_init) as pool:
                for res in pool.imap_unordered(_run_job, args, chunksize=1):
                    account(res)
    except KeyboardInterrupt:
        # The pool is terminated by now; remove what its workers were writing.
        if not opts.in_place:
            remove_orphan_temporaries(dst)
        summary.interrupted = True
    summary.seconds = time.perf_counter() - t0

    rows = []
    for res in results:
        if not res.error:
            job = res.job
            rel = job.rel_dir() if not opts.in_place else job.source.relative_to(src).as_posix()
            rows.append(job.row(res.n_frames, rel))
    if opts.shard is not None:
        _write_shard_parts(dst, opts, opts.shard, rows, shard_labels, summary)
    else:
        update = _write_index(src, dst, opts, rows, listed_labels)
        summary.rows = update.rows
        summary.new_labels = update.added_labels
        summary.problems.extend(update.dropped)
    if summary.interrupted:
        return summary
    # `vidnet prepare`'s dataset.json (augmentation preset, hflip) travels with the index it wrote.
    index_path = _index_path(src, opts)
    preset = index_path.parent / "dataset.json" if index_path is not None else None
    if preset is not None and preset.is_file() and preset.resolve() != (dst / "dataset.json").resolve():
        atomic_write_text(dst / "dataset.json", preset.read_text(encoding="utf-8"))
    if opts.shard is None:
        _write_problems(dst / ERRORS_NAME, summary.problems)
    return summary


def _base_labels(src: Path, dst: Path | None, opts: ConvertOptions) -> dict[str, int] | None:
    """The label ids a run starts from: DST's ``labels.json`` (given ``dst``), else the index's own."""
    if dst is not None and (dst / "labels.json").is_file():
        return read_labels(dst / "labels.json")
    index_path = _index_path(src, opts)
    if index_path is not None and (index_path.parent / "labels.json").is_file():
        return read_labels(index_path.parent / "labels.json")
    return None


def _write_index(src: Path, dst: Path, opts: ConvertOptions, rows: list[IndexRow], labels: list[str]) -> IndexUpdate:
    """`refresh_index` of DST with this run's rows; label ids over every listed video (a failure never
    leaves a later label's id to depend on it), starting from the index's own ``labels.json`` for a new DST."""
    return refresh_index(dst, rows, labels, base_labels=_base_labels(src, None, opts))


def _counts(summary: ConvertSummary) -> dict[str, float]:
    return {k: getattr(summary, k) for k in ("total", "converted", "skipped", "failed", "warnings", "frames",
                                             "seconds")}


def _write_shard_parts(dst: Path, opts: ConvertOptions, shard: Shard, rows: list[IndexRow], labels: dict[str, int],
                       summary: ConvertSummary) -> None:
    """A shard's part files: its index rows, its problems, and (last, so that it is written only when the
    other two are) its summary, ``finished`` unless the run was interrupted."""
    atomic_write_text(dst / part_name("index", shard, "csv"), format_index(rows))
    _write_problems(dst / part_name(ERRORS_NAME.removesuffix(".csv"), shard, "csv"), summary.problems)
    write_summary_part(dst, shard, finished=not summary.interrupted, labels=labels, options=opts.store_options(),
                       counts=_counts(summary))
    summary.rows = rows


def merge_shards(root: str | os.PathLike, *, wait: bool = False) -> ConvertSummary:
    """``vidnet convert DST --merge``: build ``index.csv``, ``labels.json``, ``convert-errors.csv`` and
    ``convert-summary.json`` of a dataset converted in shards, from the shards' part files and the stores on
    disk (`refresh_index`), holding DST's lock. Idempotent: a second merge changes nothing.

    Raises:
        UsageError: (exit 2) no parts, a shard missing or unfinished, shards that disagree (N, label ids,
            options), or a shard still holding DST.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    with open_dataset_root(root, "convert --merge", wait=wait):
        parts = read_parts(root)
        n = check_parts(root, parts)
        labels = parts[0].labels
        rows: list[IndexRow] = []
        problems: set[tuple[str, str, str]] = set()
        for part in parts:
            rows += read_index(root / part_name("index", part.shard, "csv"))
            problems |= _read_problems(root / part_name(ERRORS_NAME.removesuffix(".csv"), part.shard, "csv"))
        update = refresh_index(root, rows, sorted(labels, key=labels.__getitem__), base_labels=labels)
        summary = ConvertSummary(shards=n, rows=update.rows, new_labels=update.added_labels)
        summary.problems = sorted(problems) + update.dropped
        for key in ("total", "converted", "skipped", "frames", "seconds"):
            setattr(summary, key, type(getattr(summary, key))(sum(p.counts.get(key, 0) for p in parts)))
        # The listing's problems are in every shard's file: count them once, like a single run.
        summary.failed = sum(sev == "error" for _, sev, _ in problems)
        summary.warnings = sum(sev == "warning" for _, sev, _ in problems)
        _write_problems(root / ERRORS_NAME, summary.problems)
        atomic_write_json(root / "convert-summary.json", {
            "shards": n, **_counts(summary), "stores": len(update.rows), "labels": len(update.labels),
            "options": parts[0].options})
        # Temporaries of this host's dead runs are gone (open_dataset_root); those of other hosts cannot be told
        # alive from here: a shard killed on one node and requeued on another leaves its temporary behind.
        left = [(p, h) for p, h, _ in list_temporaries(root) if h not in (None, host_name())]
        if left:
            hosts = sorted({h for _, h in left})
            log.warning("%s: %d unfinished temporary file(s) of runs on other hosts (%s) remain; they are no "
                        "part of the dataset. Once no shard runs, delete them: find %s -name '.*.tmp' -delete",
                        root, len(left), ", ".join(hosts[:5]), root)
        return summary


def _read_problems(path: Path) -> set[tuple[str, str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {(r["path"], r["severity"], r["reason"]) for r in csv.DictReader(f)}
    except OSError as err:
        raise VidnetError(f"{path}: cannot read this shard's errors ({plain_reason(err)}); re-run the shard") from None
    except (KeyError, csv.Error) as err:
        raise VidnetError(f"{path}: not a convert-errors file ({err}); re-run the shard") from None


def reindex_dataset(root: str | os.PathLike, *, wait: bool = False) -> IndexUpdate:
    """Rebuild ``root/index.csv`` from the complete stores in ``root`` and the index rows their meta
    recorded (``labels.json`` keeps its ids; labels it lacks are appended): ``vidnet convert DST --reindex``.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    with open_dataset_root(root, "convert --reindex", wait=wait):
        return refresh_index(root, reindex=True)


def _write_problems(path: Path, problems: list[tuple[str, str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "severity", "reason"])
    writer.writerows(sorted(problems))
    atomic_write_text(path, buf.getvalue())
