"""The frames.db store: one SQLite file per video holding its frames as JPEG blobs.

Layout on disk: ``<root>/<label>/<video_id>/frames.db`` plus a text file ``n_frames`` beside it.

The table is the one the public ``dataset2database`` tool writes, so its stores and vidnet's are readable
both ways::

    Images(ObjId TEXT, frames BLOB, size INT)    -- ObjId = "<video_id>/frame_%05d" (1-based), size = width

vidnet's writer adds, without changing what the original reader's query
``SELECT ObjId, frames FROM Images WHERE ObjId IN (...)`` returns:

* the row id of each frame equals its 1-based frame number, so a clip is one b-tree lookup per frame
  (``SELECT rowid, frames FROM Images WHERE rowid IN (...)``);
* a unique index on ``ObjId`` (the original's query no longer scans the table);
* a ``meta(key, value)`` table: format version, width, height, frame count, fps, source file name, size
  and checksum, JPEG quality, notes on partial decodes, and the video's index row (``index_row``, JSON).

A store without ``meta`` (written by dataset2database: rows in any order, no index, maybe no ``n_frames``)
is read by listing its ``ObjId`` values once when it is opened, and mapping frame numbers to row ids.

Colour: frames are stored as ordinary JPEGs and decoded to **RGB** uint8 arrays of shape ``[H, W, 3]``.
(The original reader returned OpenCV's BGR while its normalisation constants were RGB.)

Writes are atomic: a store is built in a temporary file beside its destination and renamed to
``frames.db`` only when complete, so a store that exists is a store that is complete.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg

from vidnet import __version__
from vidnet._io import temp_path
from vidnet.errors import CorruptFrameError, StoreError, plain_reason

__all__ = [
    "STORE_NAME",
    "FORMAT_VERSION",
    "StoreMeta",
    "FrameStore",
    "StoreWriter",
    "ClipReader",
    "decode_frames",
    "decode_jpeg",
    "jpeg_size",
    "encode_jpeg",
    "encode_jpeg_planes",
    "is_complete_store",
    "read_n_frames_file",
    "MAX_FRAME_SIDE",
]

STORE_NAME = "frames.db"
N_FRAMES_NAME = "n_frames"
FORMAT = "vidnet-frames"
FORMAT_VERSION = 1
# Above this many ids a query binds one JSON array instead of one parameter per frame.
_MAX_BOUND_PARAMS = 900
MAX_FRAME_SIDE = 8192
"""Largest frame side in pixels that vidnet decodes (8K video is 7680 wide). A JPEG header is read before
any decode and a larger frame is refused: a 631-byte file can claim 60000x60000 pixels (10 GiB decoded)."""
_MMAP_SIZE = 1 << 30
"""Bytes of a store that SQLite may memory-map (address space only; pages are the OS's file cache)."""


@functools.lru_cache(maxsize=256)
def _clip_sql(n: int, with_count: bool) -> str:
    """The clip query of `ClipReader` for ``n`` distinct row ids (bound as ``n`` parameters, or as one JSON
    array above SQLite's parameter limit), with the store's frame count as a third column if asked."""
    where = f"IN ({','.join('?' * n)})" if n <= _MAX_BOUND_PARAMS else "IN (SELECT value FROM json_each(?))"
    count = ", (SELECT value FROM meta WHERE key = 'n_frames')" if with_count else ""
    return f"SELECT rowid, frames{count} FROM Images WHERE rowid {where}"
_FRAME_NUMBER = re.compile(r"(\d+)(?:\.[A-Za-z]+)?$")
# Measured here on 16-frame clips of 39 KB frames: 4-32 KiB pages read equally fast (7-8 us a frame, against
# ~180 us to decode it), 64 KiB pages slower; larger pages waste space on short, small-frame videos.
_PAGE_SIZE = 4096


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB uint8 ``[H, W, 3]`` array as JPEG (libjpeg-turbo through simplejpeg, 4:2:0)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB",
                                  colorsubsampling="420")


def check_frame_size(height: int, width: int) -> None:
    """Refuse a frame with a side above `MAX_FRAME_SIDE` (`CorruptFrameError`), before anything is allocated."""
    if max(height, width) > MAX_FRAME_SIDE:
        raise CorruptFrameError(f"frame of {width}x{height} pixels is above the {MAX_FRAME_SIDE}-pixel limit")


def encode_jpeg_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int = 90) -> bytes:
    """Encode full-range YCbCr planes as JPEG: ``y`` ``[H, W]``, ``u`` (Cb) and ``v`` (Cr) ``[ceil(H/2),
    ceil(W/2)]`` give a 4:2:0 file like `encode_jpeg`'s, without its RGB -> YCbCr conversion and chroma
    down-sampling (the planes are already YCbCr 4:2:0)."""
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality)


def decode_jpeg(data: bytes, *, min_height: int = 0, min_width: int = 0) -> np.ndarray:
    """Decode JPEG bytes to an RGB uint8 ``[H, W, 3]`` array: the one place vidnet decodes a JPEG frame.

    The size is read from the header first: a frame above `MAX_FRAME_SIDE` is refused without decoding.

    Args:
        data: the JPEG bytes.
        min_height: with ``min_width``, let libjpeg-turbo decode at a reduced scale (1/2, 1/4, 1/8 in the
            DCT domain) as long as the result is at least this large: cheaper than decoding and resizing.
        min_width: see ``min_height``.

    Raises:
        CorruptFrameError: the header claims a frame above the size limit.
        ValueError: the bytes are not a decodable JPEG.
    """
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    check_frame_size(height, width)
    return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False,
                                  min_height=min_height, min_width=min_width)


def read_n_frames_file(folder: str | os.PathLike) -> int | None:
    """The integer in ``<folder>/n_frames``, or None when the file is absent or unreadable."""
    try:
        return int(Path(folder, N_FRAMES_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class StoreMeta:
    """Self-description of a store (empty fields for stores written by other tools).

    Attributes:
        n_frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frames per second of the stored frames (after any resampling); 0 if unknown.
        source_name: file or folder name the frames came from.
        source_size: size in bytes of the source file (0 for folders or unknown).
        source_checksum: ``sha256:<hex>`` of the source file, empty if unknown.
        jpeg_quality: quality the frames were encoded with; 0 if they were copied as they were.
        format_version: vidnet store format version; 0 for a foreign (dataset2database) store.
        writer: program and version that wrote the store.
        notes: anything the converter had to say (partial decode, a header frame count that lied, ...).
        row: the video's index row as the converter knew it (``label``, ``id``, ``time_start``, ``time_end``,
            ``split``, ``extra``), so that a dataset's index can be rebuilt from its stores.
    """

    n_frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    source_name: str = ""
    source_size: int = 0
    source_checksum: str = ""
    jpeg_quality: int = 0
    format_version: int = 0
    writer: str = ""
    notes: list[str] = field(default_factory=list)
    row: dict = field(default_factory=dict)

    def to_rows(self) -> list[tuple[str, str]]:
        d = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "n_frames": str(self.n_frames),
            "width": str(self.width),
            "height": str(self.height),
            "fps": repr(float(self.fps)),
            "source_name": self.source_name,
            "source_size": str(self.source_size),
            "source_checksum": self.source_checksum,
            "jpeg_quality": str(self.jpeg_quality),
            "color": "RGB JPEG",
            "writer": self.writer or f"vidnet {__version__}",
            "notes": json.dumps(self.notes),
            "index_row": json.dumps(self.row, ensure_ascii=False),
        }
        return list(d.items())

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> StoreMeta:
        d = dict(rows)

        def num(key: str, typ=int):
            try:
                return typ(d.get(key, 0) or 0)
            except ValueError:
                return typ(0)

        try:
            notes = json.loads(d.get("notes") or "[]")
        except json.JSONDecodeError:
            notes = [d["notes"]]
        try:
            row = json.loads(d.get("index_row") or "{}")
        except json.JSONDecodeError:
            row = {}
        return cls(
            n_frames=num("n_frames"),
            width=num("width"),
            height=num("height"),
            fps=num("fps", float),
            source_name=d.get("source_name", ""),
            source_size=num("source_size"),
            source_checksum=d.get("source_checksum", ""),
            jpeg_quality=num("jpeg_quality"),
            format_version=num("format_version"),
            writer=d.get("writer", ""),
            notes=list(notes),
            row=row if isinstance(row, dict) else {},
        )


def _ro_uri(path: Path, immutable: bool) -> str:
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


class FrameStore:
    """Read-only access to one ``frames.db``.

    Frames are addressed by 0-based index ``0 .. len(store) - 1`` (index ``i`` is the row whose ``ObjId``
    ends in frame number ``i + 1`` for vidnet stores; for foreign stores, the ``i``-th smallest frame number).
    Every fetch is one SQL statement, whatever the number of frames or duplicates asked for.

    Args:
        path: the ``frames.db`` file, or the video folder that holds it.
        immutable: tell SQLite the file cannot change while open (no locking: faster). vidnet's stores are
            never modified after they are renamed into place, so this is the default.

    Raises:
        StoreError: the file is missing, not a SQLite database, or has no ``Images`` table.
    """

    def __init__(self, path: str | os.PathLike, *, immutable: bool = True) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / STORE_NAME
        self.path = path
        if not path.is_file():
            raise StoreError(f"{path}: no such store")
        try:
            self._con = sqlite3.connect(_ro_uri(path, immutable), uri=True, check_same_thread=False)
            tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path}: not a readable SQLite store ({err})") from None
        if "Images" not in tables:
            self._con.close()
            raise StoreError(f"{path}: not a frame store (no Images table)")
        self.meta = StoreMeta()
        if "meta" in tables:
            self.meta = StoreMeta.from_rows(self._con.execute("SELECT key, value FROM meta"))
        # vidnet stores: rowid == frame number. Foreign stores: map sorted frame numbers to rowids once.
        self._rowids: np.ndarray | None = None
        if self.meta.format_version >= 1:
            self._n = self.meta.n_frames
        else:
            self._rowids = self._scan_foreign()
            self._n = len(self._rowids)
            self.meta.n_frames = self._n
            first = self._con.execute("SELECT size FROM Images WHERE rowid = ?", (int(self._rowids[0]),)).fetchone()
            if first and first[0]:
                self.meta.width = int(first[0])

    def _scan_foreign(self) -> np.ndarray:
        pairs = []
        for rowid, obj in self._con.execute("SELECT rowid, ObjId FROM Images"):
            m = _FRAME_NUMBER.search(str(obj))
            if m is None:
                raise StoreError(f"{self.path}: row {rowid} has an ObjId without a frame number: {obj!r}")
            pairs.append((int(m.group(1)), rowid))
        if not pairs:
            raise StoreError(f"{self.path}: the store holds no frames")
        pairs.sort()
        numbers = [p[0] for p in pairs]
        if len(set(numbers)) != len(numbers):
            raise StoreError(f"{self.path}: two rows share a frame number")
        return np.array([p[1] for p in pairs], dtype=np.int64)

    @property
    def is_vidnet(self) -> bool:
        """Whether the store was written by vidnet (has ``meta`` and row id == frame number)."""
        return self._rowids is None

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        """Close the connection (also done by the context manager and on garbage collection)."""
        self._con.close()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameStore({str(self.path)!r}, n_frames={self._n})"

    def _rowids_for(self, indices: np.ndarray) -> np.ndarray:
        if indices.size and (indices.min() < 0 or indices.max() >= self._n):
            bad = int(indices[(indices < 0) | (indices >= self._n)][0])
            raise IndexError(f"{self.path}: frame index {bad} out of range for {self._n} frames")
        return indices + 1 if self._rowids is None else self._rowids[indices]

    def get_bytes(self, indices: Sequence[int] | np.ndarray) -> list[bytes]:
        """Encoded JPEG bytes of the frames at ``indices`` (0-based), in the requested order.

        Duplicates are allowed and returned as often as asked (a short video may need a frame twice);
        the database is asked once per distinct frame, in one SQL statement.

        Raises:
            IndexError: an index is out of range.
            StoreError: a frame the store claims to hold is missing.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return []
        rowids = self._rowids_for(idx)
        unique = np.unique(rowids).tolist()
        if len(unique) <= _MAX_BOUND_PARAMS:
            sql = f"SELECT rowid, frames FROM Images WHERE rowid IN ({','.join('?' * len(unique))})"
            params: Sequence = unique
        else:
            sql = "SELECT rowid, frames FROM Images WHERE rowid IN (SELECT value FROM json_each(?))"
            params = (json.dumps(unique),)
        try:
            found = dict(self._con.execute(sql, params).fetchall())
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: read failed ({err})") from None
        try:
            return [found[r] for r in rowids.tolist()]
        except KeyError as err:
            frame = int(idx[rowids.tolist().index(err.args[0])])
            raise StoreError(f"{self.path}: frame {frame} is missing from the store") from None

    def get_frames(self, indices: Sequence[int] | np.ndarray, *, min_size: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """Decoded RGB uint8 frames ``[len(indices), H, W, 3]`` in the requested order.

        Each distinct frame is decoded once, duplicates are copies.

        Args:
            indices: 0-based frame indices.
            min_size: ``(height, width)``: allow a reduced-scale DCT decode that is still at least this large.

        Raises:
            CorruptFrameError: a blob does not decode as JPEG (the message names the store and frame).
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return decode_frames(self.path, idx, self.get_bytes(idx), min_size)

    def verify(self) -> list[str]:
        """Decode every frame; return a list of problems (empty when the store is sound)."""
        problems = []
        shape = None
        for i in range(self._n):
            try:
                (blob,) = self.get_bytes([i])
                frame = decode_jpeg(blob)
            except (StoreError, ValueError, RuntimeError) as err:
                problems.append(f"frame {i}: {err}")
                continue
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                problems.append(f"frame {i}: size {frame.shape[:2]} differs from {shape[:2]}")
        if self.is_vidnet and shape is not None and (shape[0], shape[1]) != (self.meta.height, self.meta.width):
            problems.append(f"meta says {self.meta.height}x{self.meta.width}, frames are {shape[0]}x{shape[1]}")
        return problems


def decode_frames(path: Path, idx: np.ndarray, blobs: Sequence[bytes], min_size: tuple[int, int] | None
                   ) -> np.ndarray:
    """Decode ``blobs`` (the JPEG bytes of frames ``idx`` of the store at ``path``) to RGB ``[N, H, W, 3]``.

    Each distinct frame is decoded once and repeated indices are copies; ``min_size`` allows a reduced-scale
    decode (see `decode_jpeg`). Frames of different sizes are an error (`CorruptFrameError`).
    """
    mh, mw = min_size or (0, 0)
    decoded: dict[int, np.ndarray] = {}
    out = []
    for i, blob in zip(idx.tolist(), blobs, strict=True):
        if i not in decoded:
            try:
                decoded[i] = decode_jpeg(blob, min_height=mh, min_width=mw)
            except (ValueError, RuntimeError, CorruptFrameError) as err:
                raise CorruptFrameError(f"{path}: frame {i} does not decode ({err})") from None
        out.append(decoded[i])
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise CorruptFrameError(f"{path}: frames of different sizes {sorted(shapes)}")
    return np.stack(out) if out else np.empty((0, 0, 0, 3), np.uint8)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG header, without decoding (a few microseconds)."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    except (ValueError, RuntimeError) as err:
        raise CorruptFrameError(f"not a valid JPEG ({err})") from None
    return int(h), int(w)


class ClipReader:
    """The training read path of one ``frames.db``: nothing is queried when it is opened, and each read is
    one SQL statement that also returns the store's frame count.

    Opening a `FrameStore` costs three statements (schema, ``meta``, then the frames), a few hundred
    microseconds: as much as decoding a short clip of small frames, paid on every clip when a dataset has
    more videos than a worker keeps open. For vidnet stores (row id == frame number) ``ClipReader`` asks for
    the frames together with ``meta.n_frames`` in one statement; a store without ``meta`` (written by
    dataset2database) is detected by that statement failing and read through a `FrameStore` from then on.

    Args:
        path: the ``frames.db`` file (absolute paths skip a ``resolve``).

    Raises (from the reads, since opening touches nothing):
        StoreError: the file is not a readable store, a frame is missing.
        CorruptFrameError: a frame does not decode.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro&immutable=1"
        self._con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._fresh = True
        self._foreign: FrameStore | None = None
        self.n_frames: int | None = None
        """Frames in the store, known after the first read."""

    def close(self) -> None:
        """Close the connection."""
        (self._foreign or self._con).close()

    def __len__(self) -> int:
        if self.n_frames is None:
            try:
                (n,) = self._con.execute("SELECT value FROM meta WHERE key = 'n_frames'").fetchone()
                self.n_frames = int(n)
            except (sqlite3.DatabaseError, TypeError, ValueError):
                self._fall_back()  # sets n_frames
        return self.n_frames  # type: ignore[return-value]

    def _fall_back(self) -> FrameStore:
        if self._foreign is None:
            self._con.close()
            self._foreign = FrameStore(self.path)
            self.n_frames = len(self._foreign)
        return self._foreign

    def get_bytes(self, indices: Sequence[int] | np.ndarray) -> list[bytes]:
        """JPEG bytes of the frames at 0-based ``indices`` in the requested order (one SQL statement)."""
        if self._foreign is not None:
            return self._foreign.get_bytes(indices)
        # Plain Python on the few indices of a clip: numpy's per-call overhead would cost more than the SQL.
        idx = indices.reshape(-1).tolist() if isinstance(indices, np.ndarray) else [int(i) for i in indices]
        if not idx:
            return []
        rowids = sorted({i + 1 for i in idx})
        if rowids[0] < 1:
            raise IndexError(f"{self.path}: frame index {rowids[0] - 1} is negative")
        first = self.n_frames is None
        try:
            if self._fresh:
                # SQLite's own page cache (2 MB per connection by default) would keep a private copy of every
                # page read for as long as the store stays open: with hundreds of stores open per worker, the
                # dataset again in each worker. Pages are read through a memory map of the file instead
                # (shared with the operating system's cache, and cheaper than a read call per page).
                self._con.execute("PRAGMA cache_size = 0")
                self._con.execute(f"PRAGMA mmap_size = {_MMAP_SIZE}")
                self._fresh = False
            # The first read also fetches the frame count (then known: later reads skip the subquery).
            rows = self._con.execute(_clip_sql(len(rowids), first), rowids if len(rowids) <= _MAX_BOUND_PARAMS
                                     else [json.dumps(rowids)]).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table: meta" in str(err):
                return self._fall_back().get_bytes(idx)
            raise StoreError(f"{self.path}: not a readable frame store ({err})") from None
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a readable SQLite store ({err})") from None
        if first and rows:
            self.n_frames = int(rows[0][2])
        if self.n_frames is not None and rowids[-1] > self.n_frames:
            raise IndexError(f"{self.path}: frame index {rowids[-1] - 1} out of range for {self.n_frames} frames")
        found = {r[0]: r[1] for r in rows}
        try:
            return [found[i + 1] for i in idx]
        except KeyError as err:
            raise StoreError(f"{self.path}: frame {err.args[0] - 1} is missing from the store") from None

    def get_frames(self, indices: Sequence[int] | np.ndarray, *, min_size: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """Decoded RGB frames, as `FrameStore.get_frames`."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return decode_frames(self.path, idx, self.get_bytes(idx), min_size)


class StoreWriter:
    """Write one ``frames.db`` atomically.

    Frames are appended in order; :meth:`commit` writes ``meta``, renames the temporary file onto
    ``frames.db`` and writes ``n_frames``. If the writer is closed without commit (an error, Ctrl-C), the
    temporary file is removed, and so are the folders the writer created: nothing that looks like a store
    (or an empty video folder) is left behind. A ``kill -9`` can leave the temporary file (named
    ``.frames.db.<host>.<pid>.<token>.tmp``); :func:`vidnet._io.remove_orphan_temporaries` removes those of
    processes that are gone.

    Args:
        folder: the video folder (``<root>/<label>/<video_id>``); created if needed.
        video_id: the ``ObjId`` prefix (the folder name, as dataset2database writes it).

    Raises:
        StoreError: the temporary file cannot be created or written (read-only or full disk), naming the store.
    """

    def __init__(self, folder: str | os.PathLike, video_id: str | None = None) -> None:
        self.folder = Path(folder)
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()][::-1]
        self.video_id = video_id or self.folder.name
        self.final_path = self.folder / STORE_NAME
        self.tmp_path = temp_path(self.final_path)
        self.n_frames = 0
        self.width = 0
        self.height = 0
        self._pending: list[tuple[int, str, bytes, int]] = []
        self._done = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.tmp_path)
            self._con.executescript(
                f"PRAGMA page_size={_PAGE_SIZE}; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                "CREATE TABLE Images(ObjId TEXT, frames BLOB, size INT);"
            )
        except (OSError, sqlite3.Error) as err:
            self._con = None
            self.abort()
            raise StoreError(f"{self.final_path}: cannot write ({plain_reason(err)})") from None

    def add(self, jpeg: bytes, width: int, height: int) -> None:
        """Append one JPEG-encoded frame of the given size (frame number = frames added so far + 1)."""
        if self.n_frames == 0:
            self.width, self.height = width, height
        elif (width, height) != (self.width, self.height):
            raise StoreError(
                f"{self.final_path}: frame {self.n_frames} is {width}x{height}, earlier ones {self.width}x{self.height}"
            )
        self.n_frames += 1
        self._pending.append((self.n_frames, f"{self.video_id}/frame_{self.n_frames:05d}", jpeg, width))
        if len(self._pending) >= 32:
            self._flush()

    def _flush(self) -> None:
        # executemany in batches: measured ~10x cheaper per row than one execute per frame.
        try:
            self._con.executemany("INSERT INTO Images(rowid, ObjId, frames, size) VALUES (?, ?, ?, ?)",
                                  self._pending)
        except sqlite3.Error as err:
            raise StoreError(f"{self.final_path}: cannot write ({plain_reason(err)})") from None
        self._pending.clear()

    def add_rgb(self, rgb: np.ndarray, quality: int) -> None:
        """Encode an RGB uint8 ``[H, W, 3]`` frame and append it."""
        self.add(encode_jpeg(rgb, quality), rgb.shape[1], rgb.shape[0])

    def commit(self, meta: StoreMeta) -> StoreMeta:
        """Finish: write meta (its size and count fields are filled from what was added), rename, n_frames."""
        if self.n_frames == 0:
            raise StoreError(f"{self.final_path}: no frames to store")
        meta.n_frames, meta.width, meta.height = self.n_frames, self.width, self.height
        meta.format_version = FORMAT_VERSION
        self._flush()
        con = self._con
        try:
            con.execute("CREATE UNIQUE INDEX Images_ObjId ON Images(ObjId)")
            con.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.to_rows())
            con.commit()
            con.close()
            os.replace(self.tmp_path, self.final_path)
            self._done = True
            write_n_frames_file(self.folder, self.n_frames)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{self.final_path}: cannot write ({plain_reason(err)})") from None
        return meta

    def abort(self) -> None:
        """Discard the temporary file, and the folders this writer created if they are empty."""
        if self._done:
            return
        self._done = True
        try:
            if self._con is not None:
                self._con.close()
        except sqlite3.Error:
            pass
        self.tmp_path.unlink(missing_ok=True)
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:  # not empty (another video of the label), or already gone
                break

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def write_n_frames_file(folder: str | os.PathLike, n: int) -> None:
    """Write ``<folder>/n_frames`` atomically."""
    from vidnet._io import atomic_write_text

    atomic_write_text(Path(folder, N_FRAMES_NAME), f"{n}\n")


def is_complete_store(folder: str | os.PathLike) -> StoreMeta | None:
    """The meta of a complete vidnet store in ``folder``, or None (absent, foreign, or unreadable)."""
    path = Path(folder, STORE_NAME)
    if not path.is_file():
        return None
    try:
        with FrameStore(path) as store:
            return store.meta if store.is_vidnet and store.meta.n_frames > 0 else None
    except StoreError:
        return None
