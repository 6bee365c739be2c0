"""Decoding video files with PyAV: the one place where vidnet turns a video file into frames.

PyAV (FFmpeg) reads every container and codec FFmpeg knows and reports errors as exceptions, which is
what lets conversion keep the frames that decode from a file that breaks half-way.

Frames come out as RGB arrays (`iter_video_frames`, `read_video_frames`), or as the decoder's own frames
(`iter_decoded_frames`) whose 4:2:0 planes `frame_to_yuv420` hands over without a colour conversion:
conversion resizes those planes and gives them to the JPEG encoder, which stores YCbCr 4:2:0 anyway, so the
YUV -> RGB -> YCbCr round trip of the RGB path is never made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from vidnet.errors import VidnetError

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoDecodeError",
    "probe_video",
    "iter_video_frames",
    "frame_to_rgb",
    "Yuv420",
    "frame_to_yuv420",
    "iter_decoded_frames",
    "read_video_frames",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".m4v")

# FFmpeg colour-space codes for which OpenCV's BT.601 limited-range YUV->RGB is the right conversion.
_BT601_OR_UNSPECIFIED = {2, 5, 6}  # unspecified, BT470BG, SMPTE170M
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


class VideoDecodeError(VidnetError):
    """A video cannot be opened or stops decoding; ``frames_decoded`` says how far it got."""

    def __init__(self, message: str, frames_decoded: int = 0) -> None:
        super().__init__(message)
        self.frames_decoded = frames_decoded


@dataclass(frozen=True)
class VideoInfo:
    """What a container's header says about its first video stream (the header can be wrong).

    Attributes:
        width: frame width.
        height: frame height.
        fps: average frame rate, 0 if unknown.
        header_frames: frame count the header claims, 0 if it claims none.
        duration: seconds, 0 if unknown.
        codec: codec name.
    """

    width: int
    height: int
    fps: float
    header_frames: int
    duration: float
    codec: str


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError:  # the file exists: FFmpeg read it as a playlist or list naming missing files
        raise VideoDecodeError(f"{path}: not a video (FFmpeg read it as a playlist or list of other files, "
                               "which do not exist)") from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(f"{path}: not a readable video ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: the container has no video stream")
    return container


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.splitlines()[0] if text else type(err).__name__


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the header of a video file.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or has no video stream.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / av.time_base
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else 0.0,
            header_frames=int(stream.frames or 0),
            duration=duration,
            codec=stream.codec_context.name,
        )


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """An RGB uint8 ``[H, W, 3]`` array from a decoded frame.

    For the common case (planar 4:2:0, limited range, BT.601 or unspecified colour space) the planes are
    converted by OpenCV, about 3x faster than FFmpeg's swscale here; anything else goes through swscale,
    which honours the stream's colour space and range.
    """
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and int(getattr(frame, "colorspace", 2)) in _BT601_OR_UNSPECIFIED
        and int(getattr(frame, "color_range", 0)) != 2  # 2 = full (JPEG) range
    ):
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


@dataclass(frozen=True)
class Yuv420:
    """The three planes of a 4:2:0 frame: ``y`` ``[H, W]``, ``u`` (Cb) and ``v`` (Cr) ``[ceil(H/2), ceil(W/2)]``,
    uint8, BT.601 colour space; ``full_range`` False for video's limited range (Y 16-235, chroma 16-240),
    True for JPEG's full range. Views of the decoder's buffers (rows may be padded: not contiguous)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    full_range: bool

    def to_jfif(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contiguous full-range planes, the YCbCr of a JPEG (JFIF) file: limited-range levels are stretched
        (Y 16-235 and chroma 16-240 onto 0-255, by table look-up)."""
        if self.full_range:
            return tuple(np.ascontiguousarray(p) for p in (self.y, self.u, self.v))  # type: ignore[return-value]
        return cv2.LUT(self.y, _Y_TO_FULL), cv2.LUT(self.u, _C_TO_FULL), cv2.LUT(self.v, _C_TO_FULL)


_Y_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_C_TO_FULL = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def frame_to_yuv420(frame: av.VideoFrame) -> Yuv420 | None:
    """The planes of a decoded frame when they are 8-bit YCbCr 4:2:0 in the BT.601 (or unspecified) colour
    space, without a copy or a colour conversion; None for any other format (4:2:2, 4:4:4, 10-bit, RGB,
    paletted) or colour space (BT.709, BT.2020): the caller takes `frame_to_rgb`, which converts those
    correctly. The colour-space rule is `frame_to_rgb`'s, so both paths read a frame's colours alike."""
    name = frame.format.name
    if name not in ("yuv420p", "yuvj420p") or int(getattr(frame, "colorspace", 2)) not in _BT601_OR_UNSPECIFIED:
        return None
    full = name == "yuvj420p" or int(getattr(frame, "color_range", 0)) == _FULL_RANGE
    return Yuv420(_plane(frame, 0), _plane(frame, 1), _plane(frame, 2), full)



_MAX_BAD_PACKETS = 16


def _decode_all(container, stream, errors: list[str]) -> Iterator[av.VideoFrame]:
    """Every frame that decodes: a packet that fails to decode is skipped (up to a limit), a stream that
    cannot be read further ends the loop, and the decoder is flushed either way so that frames it holds
    back for reordering are not lost. Problems are appended to ``errors``."""
    packets = container.demux(stream)
    bad = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.FFmpegError, ValueError, RuntimeError) as err:
            errors.append(f"read error: {_reason(err)}")
            break
        try:
            yield from packet.decode()
        except (av.FFmpegError, ValueError, RuntimeError) as err:
            bad += 1
            if bad == 1:
                errors.append(f"decode error: {_reason(err)}")
            if bad >= _MAX_BAD_PACKETS:
                errors.append(f"{bad} packets failed to decode")
                break
    if errors:
        try:
            yield from stream.codec_context.decode(None)
        except (av.FFmpegError, ValueError, RuntimeError):
            pass


def iter_decoded_frames(path: str | os.PathLike, *, fps: float | None = None, threads: int = 1,
                        start: float | None = None, end: float | None = None) -> Iterator[av.VideoFrame]:
    """Decode a video file frame by frame, as the decoder's frames (`frame_to_rgb`, `frame_to_yuv420`).

    The decoder is the truth: frames are counted as they decode, whatever the header claims.

    Args:
        path: the video file.
        fps: resample to this frame rate by picking, for each output time ``k / fps``, the latest source
            frame shown at or before it (drops frames to go down, repeats them to go up: a repeated frame is
            the same object again); None keeps all.
        threads: decoder threads (1 when the caller parallelises over videos, as conversion does until fewer
            videos remain than workers).
        start: first second to keep (seeks to the key frame before it and drops what precedes it).
        end: keep frames shown before this second.

    Raises:
        VideoDecodeError: the file cannot be opened, or decoding fails; ``frames_decoded`` says how many
            frames were yielded before the failure.
    """
    n = 0
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_count = max(1, threads)
        stream.thread_type = "AUTO" if threads > 1 else "NONE"
        time_base = float(stream.time_base) if stream.time_base else 0.0
        src_rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        step = 1.0 / fps if fps else 0.0
        eps = 1e-3  # timestamps are rounded to the stream's time base
        next_t = 0.0
        prev: av.VideoFrame | None = None
        prev_t = 0.0
        errors: list[str] = []
        src_i = 0
        if start and time_base:
            container.seek(int(start / time_base), stream=stream, backward=True, any_frame=False)
        for frame in _decode_all(container, stream, errors):
            if start is not None or end is not None:
                ft = frame.pts * time_base if frame.pts is not None and time_base else 0.0
                if start is not None and ft < start - 1e-3:
                    continue
                if end is not None and ft >= end - 1e-3:
                    break
            if not fps:
                yield frame
                n += 1
                continue
            if frame.pts is not None and time_base:
                t = frame.pts * time_base
            else:
                t = src_i / src_rate if src_rate else src_i * step
            src_i += 1
            if prev is None:
                next_t = t  # the first frame starts the output clock
            else:
                while next_t < t - eps:  # output times before this frame show the previous one
                    yield prev
                    n += 1
                    next_t += step
            prev, prev_t = frame, t
        if prev is not None:
            while next_t <= prev_t + eps:
                yield prev
                n += 1
                next_t += step
        if errors:
            raise VideoDecodeError(f"{path}: decoding stopped after {n} frames ({errors[0]})", n)
    finally:
        container.close()


def iter_video_frames(path: str | os.PathLike, *, fps: float | None = None, threads: int = 1,
                      start: float | None = None, end: float | None = None) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame as RGB uint8 ``[H, W, 3]`` arrays (`iter_decoded_frames` and
    `frame_to_rgb`; a frame repeated by ``fps`` resampling is converted once and yielded again).

    Raises:
        VideoDecodeError: see `iter_decoded_frames`.
    """
    last: tuple[av.VideoFrame | None, np.ndarray | None] = (None, None)
    for frame in iter_decoded_frames(path, fps=fps, threads=threads, start=start, end=end):
        if frame is not last[0]:
            last = (frame, frame_to_rgb(frame))
        yield last[1]


def read_video_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode the frames at 0-based ``indices`` (display order) of a video file, frame-accurately.

    The container is opened, seeked once to the key frame at or before the first wanted frame, and decoded
    forward to the last one; a frame's number is its presentation time times the frame rate (constant frame
    rate assumed, as for the H.264 files `vidnet benchmark-io` writes), so the result does not depend on
    where the seek landed. Only wanted frames are converted to RGB. Duplicates are allowed.

    Args:
        path: the video file.
        indices: 0-based frame numbers, in any order.

    Returns:
        RGB uint8 ``[len(indices), H, W, 3]`` in the requested order.

    Raises:
        VideoDecodeError: the file cannot be opened or decoded, or a wanted frame is past its end.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    wanted = sorted(set(idx.tolist()))
    if not wanted:
        return np.empty((0, 0, 0, 3), np.uint8)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_count = 1  # one core per DataLoader worker, as the JPEG decoder uses
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        time_base = float(stream.time_base) if stream.time_base else 0.0
        if not rate or not time_base:
            raise VideoDecodeError(f"{path}: no frame rate or time base: frame-accurate seeking is impossible")
        start = stream.start_time or 0
        found: dict[int, np.ndarray] = {}

        def decode_from(first: int) -> None:
            if first > 0:
                container.seek(start + int(first / rate / time_base), stream=stream, backward=True, any_frame=False)
            todo = [i for i in wanted if i not in found]
            for frame in container.decode(stream):
                number = round((frame.pts - start) * time_base * rate) if frame.pts is not None else -1
                if number > todo[0] and not found and first > 0:
                    break  # the seek landed after the first wanted frame: the caller decodes from the start
                if number in todo:
                    found[number] = frame_to_rgb(frame)
                    if len(found) == len(wanted):
                        return

        try:
            decode_from(wanted[0])
            if not found and wanted[0] > 0:
                container.seek(0, stream=stream, backward=True, any_frame=False)
                decode_from(0)
        except (av.FFmpegError, ValueError, RuntimeError) as err:
            raise VideoDecodeError(f"{path}: decoding failed ({_reason(err)})", len(found)) from None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoDecodeError(f"{path}: frame {missing[0]} not found (past the end?)", len(found))
        return np.stack([found[i] for i in idx.tolist()])
    finally:
        container.close()
