"""The dataset index: ``index.csv`` (one row per video) and ``labels.json`` (label name -> integer id).

``index.csv`` keeps the column names of the original SRTG CSV files so that those files load as they are:
``label,id,time_start,time_end,split`` with a header row. vidnet adds, after those, ``n_frames`` (frames in
the store) and ``path`` (the store's folder relative to the dataset root, ``<label>/<video_id>``); any other
column is kept as an extra. The original's ``youtube_id`` column is read as ``id``.

``labels.json`` maps label names to ids. A new dataset's ids follow sorted name order, so the same set of
classes always gets the same ids, whatever order videos were found in; after that the ids of a dataset
never change (`assign_label_ids`): a label seen later is appended, so checkpoints trained on it stay valid.

Ids and labels come from files other people wrote, and become folder names: `check_name` validates them in
one place, where an index is read (`read_index`), and `index.csv`'s ``path`` column must stay inside the
dataset. A dataset's index is a fact about its folder: `refresh_index` rewrites it from the complete stores
on disk (with the rows already known for them), never from what one run saw.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vidnet._io import atomic_write_text, inside
from vidnet._log import get_logger
from vidnet.data.store import STORE_NAME, FrameStore
from vidnet.errors import StoreError, VidnetError

__all__ = [
    "INDEX_COLUMNS",
    "IndexRow",
    "read_index",
    "write_index",
    "label_map",
    "read_labels",
    "write_labels",
    "video_dir_name",
    "check_name",
    "check_row",
    "format_index",
    "assign_label_ids",
    "index_from_stores",
    "refresh_index",
    "IndexUpdate",
    "MAX_NAME_BYTES",
    "split_warnings",
]

log = get_logger(__name__)

MAX_NAME_BYTES = 200
"""Longest id or label in UTF-8 bytes: a folder name (with a 14-character time-slice suffix) stays under the
255 bytes file systems allow."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

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


def video_dir_name(video_id: str, time_start: float | None = None, time_end: float | None = None) -> str:
    """Folder name of a video as the original code builds it (``<id>_%06d_%06d`` for time slices)."""
    if time_start is None or time_end is None:
        return video_id
    return f"{video_id}_{int(time_start):06d}_{int(time_end):06d}"


def check_name(text: str, what: str = "id") -> str | None:
    """Why ``text`` cannot name a folder (``None`` when it can): empty, ``.``/``..`` or a leading dot, a
    path separator, a control character, or longer than `MAX_NAME_BYTES`.

    The one check of ids and labels; `read_index` applies it to every row.
    """
    if not text.strip():
        return f"empty {what}"
    if "/" in text or "\\" in text:
        return f"{what} {text!r} contains a path separator"
    if text.startswith("."):
        return f"{what} {text!r} starts with a dot (a hidden or parent folder)"
    if _CONTROL.search(text):
        return f"{what} {text!r} contains a control character"
    if len(text.encode("utf-8")) > MAX_NAME_BYTES:
        return f"{what} {text[:40]!r}... is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_row(row: IndexRow) -> str | None:
    """Why ``row`` is unusable (``None`` when it is fine): its label and id (`check_name`) and its ``path``
    (relative, each part a valid name: it cannot lead out of the dataset)."""
    reason = check_name(row.label, "label") or check_name(row.id, "id")
    if reason is None and row.path:
        parts = row.path.split("/")
        if row.path.startswith("/") or Path(row.path).is_absolute():
            reason = f"path {row.path!r} is absolute (must be relative to the dataset root)"
        else:
            reason = next((f"path {row.path!r}: {r}" for r in (check_name(p, "part") for p in parts) if r), None)
    return reason


def _float_or_none(text: str | None, *, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise VidnetError(f"{where}: not a number: {text!r}") from None


def read_index(path: str | os.PathLike, *, problems: list[tuple[str, str, str]] | None = None) -> list[IndexRow]:
    """Read an ``index.csv`` (vidnet's, or the original SRTG CSV with ``id`` or ``youtube_id``).

    Every row is checked (`check_row`: label, id, path) and two rows naming the same store (same ``path``,
    or same label and folder name) are a duplicate.

    Args:
        path: the file.
        problems: where to record bad rows as ``(file:line, "error", reason)`` and go on; None: raise.

    Raises:
        VidnetError: the file is missing, has no ``label`` column, or no id column; or (without
            ``problems``) a bad number, a bad row, or a duplicate row (naming both lines).
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
    seen: dict[str, int] = {}
    for lineno, rec in enumerate(reader, start=2):
        where = f"{path}:{lineno}"
        try:
            row = _parse_row(rec, id_key, known, where)
            reason = check_row(row)
            key = row.path or f"{row.label}/{row.dir_name}"
            if reason is None and key in seen:
                reason = f"duplicate row: {key} is also on line {seen[key]}"
            if reason is not None:
                raise VidnetError(f"{where}: {reason}")
        except VidnetError as err:
            if problems is None:
                raise
            problems.append((where, "error", str(err).removeprefix(f"{where}: ")))
            continue
        seen[key] = lineno
        rows.append(row)
    return rows


def _parse_row(rec: dict, id_key: str, known: set[str], where: str) -> IndexRow:
    n_frames = rec.get("n_frames") or "0"
    try:
        n = int(n_frames)
    except ValueError:
        raise VidnetError(f"{where}: n_frames is not an integer: {n_frames!r}") from None
    return IndexRow(
        label=rec["label"] or "",
        id=rec[id_key] or "",
        time_start=_float_or_none(rec.get("time_start"), where=where),
        time_end=_float_or_none(rec.get("time_end"), where=where),
        split=(rec.get("split") or "").strip(),
        n_frames=n,
        path=rec.get("path") or "",
        extra={k: (v or "") for k, v in rec.items() if k not in known and k is not None},
    )


def split_warnings(rows: Iterable[IndexRow], train: str = "train") -> list[str]:
    """What makes a dataset's splits useless for training, though readable: a training split of one class
    (loss 0 and top-1 100 % from the first step), and classes that only a non-training split holds (never
    learnt, always wrong). Empty when there is no training split."""
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r.split, set()).add(r.label)
    if train not in by_split:
        return []
    out = []
    seen = by_split[train]
    if len(seen) == 1:
        out.append(f"split {train!r} holds a single class ({next(iter(seen))!r}): training learns nothing")
    for split, labels in sorted(by_split.items()):
        only = sorted(labels - seen)
        if split != train and only:
            out.append(f"split {split!r} has {len(only)} class(es) absent from {train!r}: "
                       + ", ".join(only[:5]) + (" ..." if len(only) > 5 else ""))
    return out


def _fmt_time(t: float | None) -> str:
    if t is None:
        return ""
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def format_index(rows: Iterable[IndexRow]) -> str:
    """The text of an ``index.csv``, rows sorted by (label, id, time_start) for stable diffs."""
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
    return buf.getvalue()


def write_index(path: str | os.PathLike, rows: Iterable[IndexRow]) -> None:
    """Write ``index.csv`` atomically (see `format_index`)."""
    atomic_write_text(path, format_index(rows))


def assign_label_ids(existing: dict[str, int], labels: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Label ids that never change: ``existing`` ids are kept, labels not in it are appended in sorted name
    order (so a new dataset's ids follow name order).

    Returns:
        ``(mapping, added)``: label name -> id, and the labels that were not in ``existing``.
    """
    mapping = dict(existing)
    added = sorted(set(labels) - set(mapping))
    for name in added:
        mapping[name] = len(mapping)
    return mapping, added


def label_map(labels: Iterable[str]) -> dict[str, int]:
    """Label name -> id, ids assigned in sorted name order (deterministic for the same set of names)."""
    return assign_label_ids({}, labels)[0]


def read_labels(path: str | os.PathLike) -> dict[str, int]:
    """Read ``labels.json`` (label name -> id); checks that ids are 0..N-1 without gaps or repeats."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise VidnetError(f"{path}: cannot read labels: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VidnetError(f"{path}: not valid JSON: {getattr(err, 'msg', None) or err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise VidnetError(f"{path}: expected a JSON object of label name -> integer id")
    if sorted(data.values()) != list(range(len(data))):
        raise VidnetError(f"{path}: label ids must be 0..{len(data) - 1} without gaps or repeats")
    return data


def _labels_text(mapping: dict[str, int]) -> str:
    return json.dumps(dict(sorted(mapping.items(), key=lambda kv: kv[1])), indent=2, ensure_ascii=False) + "\n"


def write_labels(path: str | os.PathLike, mapping: dict[str, int]) -> None:
    """Write ``labels.json`` atomically, in id order."""
    atomic_write_text(path, _labels_text(mapping))


def _row_from_meta(rel: str, meta_row: dict, n_frames: int) -> IndexRow:
    """The index row of a store found on disk: what its meta recorded, else its folder names."""
    label, _, folder = rel.rpartition("/")
    label = label.rpartition("/")[2]

    def num(key: str) -> float | None:
        try:
            return float(meta_row[key]) if meta_row.get(key) not in (None, "") else None
        except (TypeError, ValueError):
            return None

    extra = meta_row.get("extra")
    return IndexRow(
        label=str(meta_row.get("label") or label), id=str(meta_row.get("id") or folder),
        time_start=num("time_start"), time_end=num("time_end"), split=str(meta_row.get("split") or ""),
        n_frames=n_frames, path=rel,
        extra={str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {},
    )


def index_from_stores(root: str | os.PathLike, known: Iterable[IndexRow] = ()) -> list[IndexRow]:
    """The index rows of exactly the complete stores of a dataset.

    A store is ``root/<label>/<folder>/frames.db`` (folders named with a dot are skipped), or the store a
    ``known`` row's ``path`` names, if it lies inside ``root``. A store with a known row (the last one given
    for its path wins) keeps that row; any other is described from its meta (the row the converter recorded
    there, else its folder names and frame count). Known rows whose store is gone are dropped.
    """
    root = Path(root)
    by_path = {r.path: r for r in known if r.path}
    found: dict[str, IndexRow | None] = {}
    for label_dir in sorted(os.scandir(root), key=lambda e: e.name) if root.is_dir() else []:
        if label_dir.name.startswith(".") or not label_dir.is_dir():
            continue
        try:
            entries = sorted(os.scandir(label_dir.path), key=lambda e: e.name)
        except OSError as err:
            log.warning("%s: cannot list (%s): its stores are left out of the index", label_dir.path, err.strerror)
            continue
        for entry in entries:
            if not entry.name.startswith(".") and os.path.isfile(os.path.join(entry.path, STORE_NAME)):
                found[f"{label_dir.name}/{entry.name}"] = None
    for rel in by_path:
        if rel not in found and os.path.isfile(root / rel / STORE_NAME):
            found[rel] = None
    rows = []
    for rel in found:
        if inside(root, rel, resolve=False) is None:
            log.warning("%s: leads outside %s: left out of the index", rel, root)
            continue
        row = by_path.get(rel)
        if row is None:
            try:
                with FrameStore(root / rel / STORE_NAME) as store:
                    row = _row_from_meta(rel, store.meta.row, len(store))
            except StoreError as err:
                log.warning("%s: left out of the index (%s)", rel, err)
                continue
            if check_row(row) is not None:
                log.warning("%s: left out of the index (%s)", rel, check_row(row))
                continue
        rows.append(row)
    return rows


@dataclass
class IndexUpdate:
    """What `refresh_index` did.

    Attributes:
        rows: the index now on disk.
        labels: the label map now on disk.
        added_labels: labels that got a new id.
        dropped: rows of the old index that were unusable (``(file:line, "error", reason)``).
        written: which of ``index.csv`` and ``labels.json`` changed.
    """

    rows: list[IndexRow]
    labels: dict[str, int]
    added_labels: list[str]
    dropped: list[tuple[str, str, str]]
    written: list[str]


def refresh_index(
    root: str | os.PathLike,
    rows: Iterable[IndexRow] = (),
    labels: Iterable[str] = (),
    *,
    base_labels: dict[str, int] | None = None,
    reindex: bool = False,
) -> IndexUpdate:
    """Make ``root/index.csv`` and ``root/labels.json`` describe the complete stores in ``root``.

    The rows are those of the existing ``index.csv`` (ignored with ``reindex``), updated by ``rows``, for
    the stores that exist (`index_from_stores`), never duplicated. Label ids are stable
    (`assign_label_ids`): the existing ``labels.json`` (else ``base_labels``) keeps its ids; the labels of
    the rows and ``labels`` that it lacks are appended and reported. A file whose content would not change
    is not touched.

    Raises:
        VidnetError: the existing ``labels.json`` is unreadable (its ids cannot be kept).
    """
    root = Path(root)
    index_path, labels_path = root / "index.csv", root / "labels.json"
    dropped: list[tuple[str, str, str]] = []
    old_rows: list[IndexRow] = []
    if not reindex and index_path.is_file():
        try:
            old_rows = read_index(index_path, problems=dropped)
        except VidnetError as err:
            log.warning("%s (rebuilding the index from the stores)", err)
    final = index_from_stores(root, [*old_rows, *rows])
    old_labels = read_labels(labels_path) if labels_path.is_file() else dict(base_labels or {})
    mapping, added = assign_label_ids(old_labels, [*(r.label for r in final), *labels])
    written = []
    for path, text in ((index_path, format_index(final)), (labels_path, _labels_text(mapping))):
        try:
            same = path.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            atomic_write_text(path, text)
            written.append(path.name)
    if added and old_labels:
        log.warning("%s: %d new label(s) appended with ids %d..%d: %s", labels_path, len(added),
                    mapping[added[0]], mapping[added[-1]], ", ".join(added[:10]) + (" ..." if len(added) > 10 else ""))
    return IndexUpdate(final, mapping, added, dropped, written)
