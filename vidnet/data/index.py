"""The dataset index: ``index.csv`` (one row per video) and ``labels.json`` (label name -> integer id).

``index.csv`` keeps the column names of the original SRTG CSV files so that those files load as they are:
``label,id,time_start,time_end,split`` with a header row. vidnet adds, after those, ``n_frames`` (frames in
the store) and ``path`` (the store's folder relative to the dataset root, ``<label>/<video_id>``); any other
column is kept as an extra. The original's ``youtube_id`` column is read as ``id``.

``labels.json`` maps label names to ids assigned in sorted name order, so the same set of classes always
gets the same ids, whatever order videos were found in.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vidnet._io import atomic_write_json, atomic_write_text
from vidnet.errors import VidnetError

__all__ = [
    "INDEX_COLUMNS",
    "IndexRow",
    "read_index",
    "write_index",
    "label_map",
    "read_labels",
    "write_labels",
    "video_dir_name",
]

INDEX_COLUMNS = ("label", "id", "time_start", "time_end", "split", "n_frames", "path")


@dataclass
class IndexRow:
    """One video of a dataset index.

    Attributes:
        label: class name.
        id: video id (the store's folder name without a time-slice suffix).
        time_start: start of the clip in the source video in seconds, if the dataset slices (Kinetics, HACS).
        time_end: end in seconds.
        split: ``train``, ``val``, ``test`` or any split value; empty if unknown.
        n_frames: frames in the store; 0 if not converted yet.
        path: the store's folder relative to the dataset root; empty if not converted yet.
        extra: any further columns, kept in order.
    """

    label: str
    id: str
    time_start: float | None = None
    time_end: float | None = None
    split: str = ""
    n_frames: int = 0
    path: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dir_name(self) -> str:
        """The store folder's name: ``id`` plus ``_<start:06d>_<end:06d>`` when the row is time-sliced."""
        return video_dir_name(self.id, self.time_start, self.time_end)

    @property
    def key(self) -> str:
        """The video's unique key in its dataset: the name of its store's folder (``path``'s last part, else
        `dir_name`). Unlike ``id``, which repeats when several segments are cut from one source video."""
        return self.path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if self.path else self.dir_name


def video_dir_name(video_id: str, time_start: float | None = None, time_end: float | None = None) -> str:
    """Folder name of a video as the original code builds it (``<id>_%06d_%06d`` for time slices)."""
    if time_start is None or time_end is None:
        return video_id
    return f"{video_id}_{int(time_start):06d}_{int(time_end):06d}"


def _float_or_none(text: str | None, *, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise VidnetError(f"{where}: not a number: {text!r}") from None


def read_index(path: str | os.PathLike) -> list[IndexRow]:
    """Read an ``index.csv`` (vidnet's, or the original SRTG CSV with ``id`` or ``youtube_id``).

    Raises:
        VidnetError: the file is missing, has no ``label`` column, or no id column, or a bad number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise VidnetError(f"{path}: cannot read index: {err.strerror or err}") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "label" not in fields:
        raise VidnetError(f"{path}: not an index file: no 'label' column in the header")
    id_key = "youtube_id" if "youtube_id" in fields else "id" if "id" in fields else None
    if id_key is None:
        raise VidnetError(f"{path}: not an index file: no 'id' or 'youtube_id' column in the header")
    known = set(INDEX_COLUMNS) | {id_key}
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        where = f"{path}:{lineno}"
        n_frames = rec.get("n_frames") or "0"
        try:
            n = int(n_frames)
        except ValueError:
            raise VidnetError(f"{where}: n_frames is not an integer: {n_frames!r}") from None
        rows.append(
            IndexRow(
                label=rec["label"] or "",
                id=rec[id_key] or "",
                time_start=_float_or_none(rec.get("time_start"), where=where),
                time_end=_float_or_none(rec.get("time_end"), where=where),
                split=(rec.get("split") or "").strip(),
                n_frames=n,
                path=rec.get("path") or "",
                extra={k: (v or "") for k, v in rec.items() if k not in known and k is not None},
            )
        )
    return rows


def _fmt_time(t: float | None) -> str:
    if t is None:
        return ""
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def write_index(path: str | os.PathLike, rows: Iterable[IndexRow]) -> None:
    """Write ``index.csv`` atomically, rows sorted by (label, id, time_start) for stable diffs."""
    rows = sorted(rows, key=lambda r: (r.label, r.id, r.time_start or 0.0))
    extra_cols: list[str] = []
    for r in rows:
        for k in r.extra:
            if k not in extra_cols and k not in INDEX_COLUMNS:
                extra_cols.append(k)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*INDEX_COLUMNS, *extra_cols])
    for r in rows:
        writer.writerow(
            [r.label, r.id, _fmt_time(r.time_start), _fmt_time(r.time_end), r.split, r.n_frames, r.path]
            + [r.extra.get(k, "") for k in extra_cols]
        )
    atomic_write_text(path, buf.getvalue())


def label_map(labels: Iterable[str]) -> dict[str, int]:
    """Label name -> id, ids assigned in sorted name order (deterministic for the same set of names)."""
    return {name: i for i, name in enumerate(sorted(set(labels)))}


def read_labels(path: str | os.PathLike) -> dict[str, int]:
    """Read ``labels.json`` (label name -> id); checks that ids are 0..N-1 without gaps or repeats."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise VidnetError(f"{path}: cannot read labels: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise VidnetError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise VidnetError(f"{path}: expected a JSON object of label name -> integer id")
    if sorted(data.values()) != list(range(len(data))):
        raise VidnetError(f"{path}: label ids must be 0..{len(data) - 1} without gaps or repeats")
    return data


def write_labels(path: str | os.PathLike, mapping: dict[str, int]) -> None:
    """Write ``labels.json`` atomically, in id order."""
    atomic_write_json(path, dict(sorted(mapping.items(), key=lambda kv: kv[1])))
