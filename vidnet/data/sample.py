"""The embedded sample dataset: procedurally generated actions that differ only in motion.

Each video shows a textured object over a textured background. The class is the object's motion: moving
left, right, up or down, rotating clockwise or anticlockwise, growing or shrinking. Textures, background,
object shape, size, speed, path and noise are random per video, and each path is centred on a random point,
so a single frame does not tell the class: a model has to use time.

The videos are real encoded files (H.264 ``.mp4`` through PyAV, plus some MPEG-4 ``.avi``, H.264 ``.mkv`` and
VP8 ``.webm``) in class folders, with an ``index.csv`` naming each file and its split, so
``vidnet convert`` exercises the same path as a real dataset. Generation is deterministic for a seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from vidnet._io import atomic_write_json
from vidnet._mp import process_pool
from vidnet.data.index import IndexRow, label_map, write_index, write_labels
from vidnet.errors import UsageError

__all__ = ["SAMPLE_CLASSES", "SampleOptions", "make_sample_dataset", "render_video", "sample_dataset_json"]

SAMPLE_CLASSES = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink")

# (extension, codec) by position in a class: mostly H.264 MP4, some other containers so conversion is exercised.
_CONTAINERS = {5: (".avi", "mpeg4"), 6: (".mkv", "libx264"), 7: (".webm", "libvpx")}


@dataclass
class SampleOptions:
    """Options of ``vidnet sample``.

    Attributes:
        classes: number of classes (at most 8, taken in the order of :data:`SAMPLE_CLASSES`).
        videos_per_class: videos in each class.
        min_frames: shortest video.
        max_frames: longest video.
        width: frame width (even).
        height: frame height (even).
        fps: frame rate written in the container.
        val_fraction: share of each class put in split ``val`` (the rest is ``train``).
        seed: random seed; the same seed gives the same dataset.
        workers: processes used to render and encode.
    """

    classes: int = 8
    videos_per_class: int = 40
    min_frames: int = 32
    max_frames: int = 64
    width: int = 128
    height: int = 96
    fps: int = 25
    val_fraction: float = 0.25
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= len(SAMPLE_CLASSES):
            raise UsageError(f"--classes must be between 2 and {len(SAMPLE_CLASSES)} (got {self.classes})")
        if self.videos_per_class < 1:
            raise UsageError(f"--videos-per-class must be at least 1 (got {self.videos_per_class})")
        if not 2 <= self.min_frames <= self.max_frames:
            raise UsageError(f"need 2 <= --min-frames <= --max-frames (got {self.min_frames}, {self.max_frames})")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise UsageError(f"--width and --height must be even and at least 32 (got {self.width}x{self.height})")
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.workers <= 0:
            self.workers = os.cpu_count() or 1


def _texture(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth random colour texture: upsampled noise plus a little fine grain."""
    gh, gw = max(2, int(h / scale)), max(2, int(w / scale))
    coarse = rng.uniform(0, 255, (gh, gw, 3)).astype(np.float32)
    tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    tex += rng.normal(0, 6, (h, w, 3)).astype(np.float32)
    return np.clip(tex, 0, 255)


def render_video(label: str, n_frames: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Render one video of class ``label`` as RGB uint8 ``[T, H, W, 3]``."""
    bg = _texture(rng, height, width, rng.uniform(6, 20)) * rng.uniform(0.5, 0.9)
    size = int(rng.uniform(0.22, 0.36) * min(width, height))
    obj = _texture(rng, size, size, rng.uniform(2, 6))
    obj = np.clip(obj * rng.uniform(0.9, 1.3) + rng.uniform(20, 60), 0, 255)
    mask = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    shape = rng.integers(0, 3)
    if shape == 0:
        mask[:] = 1.0
    elif shape == 1:
        cv2.ellipse(mask, (int(c), int(c)), (size // 2, int(size * rng.uniform(0.3, 0.5))), 0, 0, 360, 1.0, -1)
    else:
        pts = np.array([[c, 0], [size - 1, size - 1], [0, size - 1]], np.int32)
        cv2.fillConvexPoly(mask, pts, 1.0)
    # A mark on the object makes its rotation visible whatever its shape.
    cv2.circle(obj, (int(size * 0.75), int(size * 0.3)), max(2, size // 8), (255, 255, 255), -1)

    t = np.arange(n_frames, dtype=np.float64) - (n_frames - 1) / 2  # centred time: the path's middle is random
    speed = rng.uniform(0.6, 1.4) * min(width, height) / n_frames  # pixels per frame
    angle0 = rng.uniform(0, 360)
    spin = rng.uniform(2.5, 6.0) * (48 / n_frames)  # degrees per frame
    growth = rng.uniform(0.6, 1.0) / n_frames  # relative scale change per frame
    base_scale = rng.uniform(0.8, 1.2)
    dx = dy = np.zeros_like(t)
    angle = np.full_like(t, angle0)
    scale = np.full_like(t, base_scale)
    if label == "move_left":
        dx = -speed * t
    elif label == "move_right":
        dx = speed * t
    elif label == "move_up":
        dy = -speed * t
    elif label == "move_down":
        dy = speed * t
    elif label == "rotate_cw":
        angle = angle0 - spin * t  # OpenCV's positive angle is anticlockwise
    elif label == "rotate_ccw":
        angle = angle0 + spin * t
    elif label == "grow":
        scale = base_scale * np.exp(growth * t)
    elif label == "shrink":
        scale = base_scale * np.exp(-growth * t)
    else:
        raise ValueError(f"unknown sample class {label!r}")
    # Centre of the path, chosen so the whole path stays inside the frame.
    half = size * float(scale.max()) / 2 * 1.42
    span_x, span_y = float(np.abs(dx).max()), float(np.abs(dy).max())
    cx = rng.uniform(min(half + span_x, width / 2), max(width - half - span_x, width / 2))
    cy = rng.uniform(min(half + span_y, height / 2), max(height - half - span_y, height / 2))
    noise_sigma = rng.uniform(2, 6)
    jitter = rng.normal(0, 0.3, (n_frames, 2))  # hand-held wobble

    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        m = cv2.getRotationMatrix2D((c, c), float(angle[i]), float(scale[i]))
        m[0, 2] += cx + dx[i] + jitter[i, 0] - c
        m[1, 2] += cy + dy[i] + jitter[i, 1] - c
        o = cv2.warpAffine(obj, m, (width, height), flags=cv2.INTER_LINEAR)
        a = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        img = bg * (1 - a) + o * a + rng.normal(0, noise_sigma, (height, width, 3))
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str, *, faststart: bool = False) -> None:
    """Encode RGB frames into a video file with PyAV (written to a temporary name, then renamed).

    Args:
        path: the file; its extension picks the container.
        frames: RGB uint8 ``[T, H, W, 3]``, even H and W.
        fps: frame rate.
        codec: an FFmpeg encoder name (``libx264``, ``mpeg4``, ``libvpx``, ...).
        faststart: MP4 only: put the index (moov) before the data, as streaming files do.
    """
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(tmp), mode="w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        elif codec == "mpeg4":
            stream.options = {"qscale": "3"}
            stream.codec_context.qscale = 3
        elif codec == "libvpx":
            stream.bit_rate = 1_500_000
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)


def _make_one(args: tuple[SampleOptions, int, int, Path]) -> IndexRow:
    opts, class_idx, i, dst = args
    label = SAMPLE_CLASSES[class_idx]
    rng = np.random.default_rng([opts.seed, class_idx, i])
    n = int(rng.integers(opts.min_frames, opts.max_frames + 1))
    ext, codec = _CONTAINERS.get(i % 8, (".mp4", "libx264"))
    video_id = f"{label}_{i:03d}"
    path = dst / label / f"{video_id}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, render_video(label, n, opts.width, opts.height, rng), opts.fps, codec)
    n_val = round(opts.videos_per_class * opts.val_fraction)
    split = "val" if i >= opts.videos_per_class - n_val else "train"
    return IndexRow(label, video_id, split=split, extra={"source": f"{label}/{video_id}{ext}", "frames": str(n)})


def sample_dataset_json(classes: int) -> dict[str, object]:
    """The sample dataset's ``dataset.json``: no horizontal flips, since a flip turns ``move_left`` into
    ``move_right`` (and ``rotate_cw`` into ``rotate_ccw``) while keeping the label."""
    return {"name": "sample", "num_classes": classes, "hflip": False, "media": "video"}


def make_sample_dataset(dst: str | os.PathLike, opts: SampleOptions,
                        on_progress: Callable[[IndexRow], None] | None = None) -> list[IndexRow]:
    """Write the sample dataset to ``dst``: ``<label>/<video>.<ext>``, ``index.csv``, ``labels.json`` and
    ``dataset.json`` (`sample_dataset_json`, which ``vidnet convert`` carries to the converted dataset)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    tasks = [(opts, c, i, dst) for c in range(opts.classes) for i in range(opts.videos_per_class)]
    rows = []
    if opts.workers == 1:
        for t in tasks:
            rows.append(_make_one(t))
            if on_progress:
                on_progress(rows[-1])
    else:
        with process_pool(opts.workers) as pool:
            for row in pool.imap_unordered(_make_one, tasks):
                rows.append(row)
                if on_progress:
                    on_progress(row)
    write_index(dst / "index.csv", rows)
    write_labels(dst / "labels.json", label_map(r.label for r in rows))
    atomic_write_json(dst / "dataset.json", sample_dataset_json(opts.classes))
    return sorted(rows, key=lambda r: (r.label, r.id))


def expected_motion(label: str) -> tuple[float, float]:
    """Unit direction of a translation class (for tests and docs); (0, 0) for the others."""
    return {"move_left": (-1.0, 0.0), "move_right": (1.0, 0.0), "move_up": (0.0, -1.0),
            "move_down": (0.0, 1.0)}.get(label, (0.0, 0.0))

