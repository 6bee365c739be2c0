"""Turn a dataset's official annotation files into vidnet's index (``vidnet prepare``).

Every supported dataset ships its labels in its own format; :func:`prepare` reads them and writes, into one
output folder:

* ``index.csv`` (:mod:`vidnet.data.index`): one row per video with ``label``, ``id``, ``split`` and, for
  time-sliced datasets, ``time_start``/``time_end``; ``n_frames=0`` and ``path=""`` because nothing is
  converted yet. The extra column ``source`` holds the video file or frame folder relative to ``--videos``
  (``vidnet convert SRC DST --index index.csv`` reads ``SRC/<source>``); it is empty when the video was not
  found on disk. UCF-101 and HMDB-51 add ``split1``..``split3``; HACS adds ``cut`` (see below).
* ``labels.json``: label name -> id in sorted name order (:func:`vidnet.data.index.label_map`).
* ``dataset.json``: the dataset's preset, read by the clip pipeline, e.g.
  ``{"name": "jester", "num_classes": 27, "hflip": false, "media": "frames"}``. ``hflip`` is false where a
  horizontal flip changes the class (Jester's "Swiping Left" / "Swiping Right", Something-Something's
  "from left to right"), so training must not flip those clips. The clip pipeline reads this file from the
  dataset root to choose its augmentation.
* ``prepare-report.json``: what was found, missing or inconsistent.

Naming rules, because ``vidnet convert`` writes ``DST/<label>/<dir_name>/frames.db``:

* ``label`` keeps the official class text (Kinetics' ``passing American football (in game)`` stays as it is:
  spaces, quotes and parentheses are legal in folder names). Only characters no folder name may hold
  (``/``, ``\\``, control characters) are replaced by ``_``; the report lists such renames.
* ``id`` is made filesystem- and shell-safe: every character outside ``[A-Za-z0-9._-]`` becomes ``_`` and a
  leading ``.`` becomes ``_`` (HMDB-51 names hold ``#``, ``!``, ``(``, ``&``...). The original file name stays
  in ``source``. Two videos of one class whose safe ids collide get ``_dup2``, ``_dup3``... in source order.
* Splits are normalised to ``train``, ``val`` and ``test`` (``training``/``validation``/``validate``...);
  UCF-101's and HMDB-51's official test lists give ``test``; a video HMDB-51 leaves out of a split gets
  ``unused``.

Only the annotation formats are parsed here; videos are looked up but never opened.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidnet._io import atomic_path
from vidnet._log import get_logger
from vidnet.data.index import IndexRow, label_map, read_index, video_dir_name, write_index, write_labels
from vidnet.errors import UsageError, VidnetError

__all__ = [
    "DATASETS",
    "DatasetPreset",
    "PrepareReport",
    "PreparedDataset",
    "prepare",
    "read_annotations",
    "safe_id",
    "safe_label",
    "write_prepared",
]

log = get_logger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".webm", ".mkv", ".mov", ".mpeg", ".mpg", ".m4v", ".wmv", ".flv", ".3gp", ".ogv"}
)


@dataclass(frozen=True)
class DatasetPreset:
    """What the clip pipeline needs to know about a dataset beyond its index.

    Attributes:
        name: the dataset name given to ``vidnet prepare``.
        num_classes: the official number of classes (the report flags a different count); None if it varies.
        hflip: whether random horizontal flips are allowed (False where left/right is part of the class).
        media: ``video`` (one file per video) or ``frames`` (a folder of numbered JPEGs per video).
        extension: the file extension ``source`` gets when ``--videos`` is not given.
    """

    name: str
    num_classes: int | None
    hflip: bool = True
    media: str = "video"
    extension: str = ".mp4"


DATASETS: dict[str, DatasetPreset] = {
    p.name: p
    for p in (
        DatasetPreset("ucf101", 101, extension=".avi"),
        DatasetPreset("hmdb51", 51, extension=".avi"),
        DatasetPreset("kinetics400", 400),
        DatasetPreset("kinetics600", 600),
        DatasetPreset("kinetics700", 700),
        DatasetPreset("jester", 27, hflip=False, media="frames", extension=""),
        DatasetPreset("sthv1", 174, hflip=False, media="frames", extension=""),
        DatasetPreset("sthv2", 174, hflip=False, extension=".webm"),
        DatasetPreset("diving48", 48),
        DatasetPreset("hacs", 200),
        DatasetPreset("mit", 339),
        DatasetPreset("srtg", None, media="frames", extension=""),
    )
}

_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def normalise_split(value: str) -> str:
    """``training``/``validation``/``validate``/``testing`` -> ``train``/``val``/``test``; others kept."""
    v = value.strip()
    return _SPLIT_NAMES.get(v.lower(), v)


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
_UNSAFE_LABEL = re.compile(r"[/\\\x00-\x1f\x7f]")


def safe_id(text: str) -> str:
    """A video id usable as a folder name on any OS and in a shell without quoting.

    Every character outside ``[A-Za-z0-9._-]`` becomes ``_``, and a leading ``.`` becomes ``_`` (no hidden
    folders, no ``..``). ``v_ApplyEyeMakeup_g08_c01`` is unchanged; ``(Rad)Schlag_die_Bank!_cartwheel_f_cm``
    becomes ``_Rad_Schlag_die_Bank__cartwheel_f_cm``.
    """
    out = _UNSAFE_ID.sub("_", text)
    if out.startswith("."):
        out = "_" + out[1:]
    return out


def safe_label(text: str) -> str:
    """The label text with only what no folder name may hold (``/``, ``\\``, control chars) replaced by ``_``.

    Spaces, quotes and parentheses are kept, so Kinetics' class names stay readable.
    """
    out = _UNSAFE_LABEL.sub("_", text.strip())
    return "_" if out in ("", ".", "..") else out


@dataclass
class _Entry:
    """One annotated video before its file is looked up."""

    label: str
    raw_id: str
    split: str
    where: str
    expected: str
    alternates: tuple[str, ...] = ()
    time_start: float | None = None
    time_end: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, float | None, float | None]:
        return (self.raw_id, self.time_start, self.time_end)


@dataclass
class PrepareReport:
    """What :func:`prepare` found: counts, missing videos and every inconsistency, with file:line.

    Attributes:
        dataset: dataset name.
        annotations: the annotations path as given.
        videos: the videos root, or None when nothing was checked on disk.
        splits: rows per split.
        found: rows per split whose video was found (empty when not checked).
        classes: number of classes written to labels.json.
        expected_classes: the official number of classes, if fixed.
        missing: ``source``-style expected paths of videos not found on disk.
        unknown_classes: rows dropped because their class is not in the dataset's class list.
        duplicates: a video listed twice with the same label and split (one row kept).
        in_two_splits: a video listed in two splits (the first listing kept).
        conflicting_labels: a video listed with two labels (the first kept) or whose folder disagrees.
        renamed: ids or labels changed to be filesystem-safe.
        skipped: rows left out on purpose, by reason (e.g. unlabelled test rows, HACS negatives).
        notes: anything else worth knowing.
    """

    dataset: str
    annotations: str
    videos: str | None
    splits: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    classes: int = 0
    expected_classes: int | None = None
    missing: list[str] = field(default_factory=list)
    unknown_classes: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    in_two_splits: list[dict[str, str]] = field(default_factory=list)
    conflicting_labels: list[dict[str, str]] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows written to index.csv."""
        return sum(self.splits.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``prepare-report.json``)."""
        return {
            "dataset": self.dataset,
            "annotations": self.annotations,
            "videos": self.videos,
            "rows": self.rows,
            "classes": self.classes,
            "expected_classes": self.expected_classes,
            "splits": dict(sorted(self.splits.items())),
            "found": dict(sorted(self.found.items())),
            "missing": {"count": len(self.missing), "videos": self.missing},
            "unknown_classes": self.unknown_classes,
            "duplicates": self.duplicates,
            "in_two_splits": self.in_two_splits,
            "conflicting_labels": self.conflicting_labels,
            "renamed": self.renamed,
            "skipped": dict(sorted(self.skipped.items())),
            "notes": self.notes,
        }


@dataclass
class PreparedDataset:
    """The result of :func:`prepare`: index rows, label map, preset and report (nothing written yet)."""

    rows: list[IndexRow]
    labels: dict[str, int]
    preset: DatasetPreset
    report: PrepareReport

    def dataset_json(self) -> dict[str, Any]:
        """The content of ``dataset.json``."""
        return {
            "name": self.preset.name,
            "num_classes": len(self.labels),
            "hflip": self.preset.hflip,
            "media": self.preset.media,
        }


# --------------------------------------------------------------------------------------------------------------
# Reading helpers


class _Issues:
    """Collects non-fatal findings while parsing."""

    def __init__(self) -> None:
        self.unknown: list[dict[str, str]] = []
        self.conflicts: list[dict[str, str]] = []
        self.skipped: Counter[str] = Counter()
        self.notes: list[str] = []

    def unknown_class(self, name: str, where: str) -> None:
        self.unknown.append({"class": name, "where": where})


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; CRLF (UCF-101's lists) and a UTF-8 BOM are accepted."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as err:
        raise VidnetError(f"{path}: cannot read: {err.strerror or err}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _read_csv(path: Path, *, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    """CSV records with the line number each starts on (blank records skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise VidnetError(f"{path}: cannot read: {err.strerror or err}") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    out = []
    line = 1
    try:
        for rec in reader:
            if any(cell.strip() for cell in rec):
                out.append((line, rec))
            line = reader.line_num + 1
    except csv.Error as err:
        raise VidnetError(f"{path}:{line}: malformed CSV: {err}") from None
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise VidnetError(f"{path}: cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise VidnetError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None


def _number(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise VidnetError(f"{where}: {what} is not a number: {text!r}") from None


def _candidates(root: Path, pattern: str) -> list[Path]:
    """Files under ``root`` or one folder below whose name matches ``pattern`` (a regex, case-insensitive)."""
    rx = re.compile(pattern, re.IGNORECASE)
    hits = [p for p in root.iterdir() if p.is_file() and rx.fullmatch(p.name)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        hits += [p for p in sub.iterdir() if p.is_file() and rx.fullmatch(p.name)]
    return sorted(hits)


def _one_file(root: Path, pattern: str, what: str, *, required: bool = True, prefer: str | None = None) -> Path | None:
    """The single annotation file matching ``pattern``; ``prefer`` (a regex) breaks ties."""
    if root.is_file():
        if re.fullmatch(pattern, root.name, re.IGNORECASE):
            return root
        if required:
            raise UsageError(f"{root}: expected the folder holding the {what} (or that file itself)")
        return None
    hits = _candidates(root, pattern)
    if len(hits) > 1 and prefer:
        preferred = [p for p in hits if re.search(prefer, p.name, re.IGNORECASE)]
        hits = preferred or hits
    if not hits:
        if required:
            raise UsageError(f"{root}: no {what} found (looked for a file matching {pattern!r})")
        return None
    if len(hits) > 1:
        raise UsageError(f"{root}: several {what} files: {', '.join(str(h) for h in hits)}; point --annotations "
                         "at the folder holding only one")
    return hits[0]


def _stem(name: str) -> str:
    """``name`` without its extension if that is a video extension (``1.5`` or a folder name stays whole)."""
    root, ext = os.path.splitext(name)
    return root if ext.lower() in VIDEO_EXTENSIONS else name


# --------------------------------------------------------------------------------------------------------------
# Dataset readers: each returns entries (one per annotated video) and the official class list (or None).


def _read_ucf101(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """UCF-101's ``ucfTrainTestlist``: ``classInd.txt`` (``<1-based id> <class>``), ``trainlist0N.txt``
    (``<class>/<video>.avi <id>``) and ``testlist0N.txt`` (``<class>/<video>.avi``, the class is the folder).

    Every video is read for all three splits present; ``split`` is the one chosen by ``split_number`` and
    ``split1``..``split3`` record all of them. Folders are matched to ``classInd`` names exactly, then ignoring
    case (the official lists write ``HandstandPushups/v_HandStandPushups_...``).
    """
    class_file = _one_file(root, r"classInd\.txt", "UCF-101 class index (classInd.txt)")
    classes: dict[int, str] = {}
    for n, line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise VidnetError(f"{class_file}:{n}: expected '<id> <class name>', got {line!r}")
        cid, name = int(parts[0]), parts[1]
        if cid in classes or name in classes.values():
            raise VidnetError(f"{class_file}:{n}: class {cid} {name!r} listed twice")
        classes[cid] = name
    by_lower = {name.lower(): name for name in classes.values()}
    lists: dict[int, tuple[Path, Path]] = {}
    for k in (1, 2, 3):
        train = _one_file(root, rf"trainlist0{k}\.txt", f"UCF-101 train list {k}", required=k == split_number)
        test = _one_file(root, rf"testlist0{k}\.txt", f"UCF-101 test list {k}", required=k == split_number)
        if train and test:
            lists[k] = (train, test)
        elif train or test:
            issues.notes.append(f"split {k}: only one of trainlist0{k}.txt / testlist0{k}.txt found; split ignored")
    entries = []
    for k, (train, test) in sorted(lists.items()):
        for path, split in ((train, "train"), (test, "test")):
            for n, line in _read_lines(path):
                where = f"{path}:{n}"
                parts = line.split()
                if split == "train" and (len(parts) != 2 or not parts[1].isdigit()):
                    raise VidnetError(f"{where}: expected '<class>/<video> <class id>', got {line!r}")
                if split == "test" and len(parts) != 1:
                    raise VidnetError(f"{where}: expected '<class>/<video>', got {line!r}")
                rel = parts[0].replace("\\", "/")
                folder, _, name = rel.rpartition("/")
                if not name:
                    raise VidnetError(f"{where}: no video file name in {rel!r}")
                folder_class = by_lower.get(folder.lower()) if folder else None
                if split == "train":
                    cid = int(parts[1])
                    if cid not in classes:
                        raise VidnetError(f"{where}: class id {cid} is not in {class_file.name} (1..{len(classes)})")
                    label = classes[cid]
                    if folder and folder_class != label:
                        detail = f"folder {folder!r} but class id {cid} = {label!r}"
                        issues.conflicts.append({"video": rel, "where": where, "detail": detail})
                else:
                    if folder_class is None:
                        issues.unknown_class(folder or "(no folder)", where)
                        continue
                    label = folder_class
                entries.append(
                    _Entry(label, _stem(name), split, where, rel, alternates=(_stem(rel), _stem(name)),
                           extra={"_split_number": str(k)})
                )
    return entries, sorted(classes.values())


def _read_hmdb51(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """HMDB-51's ``testTrainMulti_7030_splits``: ``<class>_test_split{1,2,3}.txt``, lines ``<video>.avi <flag>``
    with flag 0 = not used, 1 = train, 2 = test in that split. The class is the file name's prefix.
    """
    files = _candidates(root, r".+_test_split[123]\.txt") if root.is_dir() else [root]
    if not files:
        raise UsageError(f"{root}: no HMDB-51 split files (<class>_test_split<1|2|3>.txt) found")
    names = {1: "train", 2: "test", 0: "unused"}
    entries = []
    classes = set()
    for path in files:
        m = re.fullmatch(r"(.+)_test_split([123])\.txt", path.name)
        if m is None:
            raise UsageError(f"{path}: not an HMDB-51 split file (<class>_test_split<1|2|3>.txt)")
        label, k = m.group(1), int(m.group(2))
        classes.add(label)
        for n, line in _read_lines(path):
            where = f"{path}:{n}"
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise VidnetError(f"{where}: expected '<video> <0|1|2>' (unused/train/test), got {line!r}")
            name = parts[0]
            entries.append(
                _Entry(label, _stem(name), names[int(parts[1])], where, f"{label}/{name}",
                       alternates=(f"{label}/{_stem(name)}", _stem(name)), extra={"_split_number": str(k)})
            )
    ks = sorted({int(e.extra["_split_number"]) for e in entries})
    if split_number not in ks:
        raise UsageError(f"{root}: no HMDB-51 files for split {split_number} (found splits {ks})")
    return entries, sorted(classes)


def _kinetics_entry(label, yid, t0, t1, split, where, *, extension, raw_split):
    name = video_dir_name(yid, t0, t1)
    dirs = list(dict.fromkeys([label, label.replace(" ", "_"), safe_label(label)]))
    splits = list(dict.fromkeys([s for s in (raw_split, split) if s]))
    alts = [f"{s}/{d}/{name}" for s in splits for d in dirs] + [f"{d}/{name}" for d in dirs]
    alts += [f"{s}/{name}" for s in splits] + [name]
    return _Entry(label, yid, split, where, f"{label}/{name}{extension}", alternates=tuple(alts),
                  time_start=t0, time_end=t1)


_KINETICS_COLUMNS = frozenset({"label", "youtube_id", "time_start", "time_end", "split"})


def _read_kinetics(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """Kinetics-400/600/700 CSVs: header ``label,youtube_id,time_start,time_end,split`` (Kinetics-400's train CSV
    adds ``is_cc``; the test CSVs have no ``label`` column). A folder is read for every ``*.csv`` in it.

    Video files are named ``<youtube_id>_<start:06d>_<end:06d>.mp4`` and looked for in ``<label>/``,
    ``<label with _ for spaces>/``, ``<split>/``, ``<split>/<label>/`` and the root. Rows without a label
    (the test set) are skipped and counted; other columns (``is_cc``) are kept as extras. The class list is
    the labels of the training rows; a label only seen in other splits is reported as unknown.
    """
    files = [root] if root.is_file() else sorted(root.glob("*.csv"))
    if not files:
        raise UsageError(f"{root}: no Kinetics CSV files found")
    entries = []
    for path in files:
        records = _read_csv(path)
        if not records:
            continue
        header = [h.strip() for h in records[0][1]]
        needed = {"youtube_id", "time_start", "time_end"}
        if not needed <= set(header):
            raise VidnetError(f"{path}:{records[0][0]}: not a Kinetics CSV: the header needs "
                              f"{', '.join(sorted(needed))} (got {','.join(header)})")
        col = {h: i for i, h in enumerate(header)}
        for n, rec in records[1:]:
            where = f"{path}:{n}"
            if len(rec) != len(header):
                raise VidnetError(f"{where}: {len(rec)} fields, the header has {len(header)}")
            label = rec[col["label"]].strip() if "label" in col else ""
            raw_split = rec[col["split"]].strip() if "split" in col else _split_from_name(path.name)
            if not label:
                issues.skipped["unlabelled"] += 1
                continue
            yid = rec[col["youtube_id"]].strip()
            if not yid:
                raise VidnetError(f"{where}: empty youtube_id")
            t0 = _number(rec[col["time_start"]], where, "time_start")
            t1 = _number(rec[col["time_end"]], where, "time_end")
            if t1 < t0:
                raise VidnetError(f"{where}: time_end {t1:g} is before time_start {t0:g}")
            entry = _kinetics_entry(label, yid, t0, t1, normalise_split(raw_split), where,
                                    extension=preset.extension, raw_split=raw_split)
            entry.extra = {h: rec[i].strip() for h, i in col.items() if h not in _KINETICS_COLUMNS}
            entries.append(entry)
    train_labels = sorted({e.label for e in entries if e.split == "train"})
    if not train_labels:
        issues.notes.append("no training rows: the class list is taken from all labelled rows")
        return entries, sorted({e.label for e in entries})
    return entries, train_labels


def _split_from_name(name: str) -> str:
    low = name.lower()
    for word, split in (("train", "train"), ("val", "val"), ("test", "test")):
        if word in low:
            return split
    return ""


def _read_twentybn(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """Jester / Something-Something v1 (20BN): ``*-labels.csv`` (one class per line, official id = line order),
    ``*-train.csv`` and ``*-validation.csv`` (``<id>;<class>``), ``*-test.csv`` (``<id>`` only, skipped).

    Each video is a folder of numbered JPEGs (``<id>/00001.jpg``), looked for at the root and under
    ``20bn-jester-v1/`` or ``20bn-something-something-v1/``.
    """
    labels_file = _one_file(root, r".*labels?\.csv", "class list (*-labels.csv)")
    classes = []
    for n, line in _read_lines(labels_file):
        if line in classes:
            raise VidnetError(f"{labels_file}:{n}: class {line!r} listed twice")
        classes.append(line)
    known = set(classes)
    parts = {
        "train": _one_file(root, r".*train\.csv", "training list (*-train.csv)"),
        "val": _one_file(root, r".*(validation|val)\.csv", "validation list (*-validation.csv)", required=False),
        "test": _one_file(root, r".*test\.csv", "test list (*-test.csv)", required=False),
    }
    folders = ("", "20bn-jester-v1", "20bn-something-something-v1")
    entries = []
    for split, path in parts.items():
        if path is None:
            continue
        for n, line in _read_lines(path):
            where = f"{path}:{n}"
            vid, sep, label = line.partition(";")
            vid, label = vid.strip(), label.strip()
            if not vid or ";" in label:
                raise VidnetError(f"{where}: expected '<id>;<class>', got {line!r}")
            if not sep or not label:
                if split == "test":
                    issues.skipped["unlabelled"] += 1
                    continue
                raise VidnetError(f"{where}: expected '<id>;<class>', got {line!r}")
            if label not in known:
                issues.unknown_class(label, where)
                continue
            alts = tuple(f"{f}/{vid}" if f else vid for f in folders)
            entries.append(_Entry(label, vid, split, where, vid, alternates=alts))
    return entries, classes


def _read_sthv2(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """Something-Something v2: ``something-something-v2-labels.json`` (``{class: "<id>"}``), ``-train.json`` and
    ``-validation.json`` (lists of ``{"id", "label", "template", "placeholders"}``; the class is the template
    without its brackets), ``-test.json`` (``{"id"}`` only, skipped). Videos are ``<id>.webm`` at the root or
    under ``20bn-something-something-v2/``.
    """
    labels_file = _one_file(root, r".*labels\.json", "class list (*-labels.json)")
    mapping = _read_json(labels_file)
    if not isinstance(mapping, dict):
        raise VidnetError(f"{labels_file}: expected a JSON object of class name -> id")
    classes = sorted(mapping)
    entries = []
    for split, pattern in (("train", r".*train\.json"), ("val", r".*validation\.json"), ("test", r".*test\.json")):
        path = _one_file(root, pattern, f"{split} list", required=split == "train")
        if path is None:
            continue
        data = _read_json(path)
        if not isinstance(data, list):
            raise VidnetError(f"{path}: expected a JSON list of videos")
        for i, item in enumerate(data):
            where = f"{path}:item {i}"
            if not isinstance(item, dict) or "id" not in item:
                raise VidnetError(f"{where}: expected an object with 'id'")
            if "template" not in item:
                if split != "test":
                    raise VidnetError(f"{where}: no 'template' (the class) in a {split} item")
                issues.skipped["unlabelled"] += 1
                continue
            label = str(item["template"]).replace("[", "").replace("]", "")
            vid = str(item["id"])
            entries.append(_Entry(label, vid, split, where, f"{vid}{preset.extension}",
                                  alternates=(vid, f"20bn-something-something-v2/{vid}")))
    return entries, classes


def _read_diving48(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """Diving-48: ``Diving48_vocab.json`` (48 lists ``[takeoff, somersault, twist, flight]``, official id =
    position) and ``Diving48[_V2]_{train,test}.json`` (lists of ``{"vid_name", "label", "start_frame",
    "end_frame"}``). The V2 (cleaned) lists are preferred when both are present.

    The annotations hold only class numbers, so each class is named ``<id:02d>_<takeoff>_<somersault>_<twist>_
    <flight>`` (``00_Back_15som_05Twis_FREE``): sorted names then keep the official ids. Videos are
    ``<vid_name>.mp4`` at the root or under ``rgb/``.
    """
    vocab_file = _one_file(root, r".*vocab\.json", "Diving-48 vocabulary (Diving48_vocab.json)")
    vocab = _read_json(vocab_file)
    if not isinstance(vocab, list) or not all(isinstance(v, list | str) for v in vocab):
        raise VidnetError(f"{vocab_file}: expected a JSON list of classes (each a list of sub-labels)")
    width = max(2, len(str(len(vocab) - 1)))
    classes = [f"{i:0{width}d}_" + safe_id("_".join(v) if isinstance(v, list) else v) for i, v in enumerate(vocab)]
    entries = []
    for split, pattern in (("train", r".*train\.json"), ("test", r".*test\.json")):
        path = _one_file(root, pattern, f"Diving-48 {split} list", required=split == "train", prefer="v2")
        if path is None:
            continue
        data = _read_json(path)
        if not isinstance(data, list):
            raise VidnetError(f"{path}: expected a JSON list of videos")
        for i, item in enumerate(data):
            where = f"{path}:item {i}"
            if not isinstance(item, dict) or "vid_name" not in item or "label" not in item:
                raise VidnetError(f"{where}: expected an object with 'vid_name' and 'label'")
            cid = item["label"]
            if not isinstance(cid, int) or not 0 <= cid < len(classes):
                issues.unknown_class(str(cid), where)
                continue
            vid = str(item["vid_name"])
            extra = {k: str(item[k]) for k in ("start_frame", "end_frame") if k in item}
            entries.append(_Entry(classes[cid], vid, split, where, f"rgb/{vid}{preset.extension}",
                                  alternates=(f"rgb/{vid}", vid), extra=extra))
    return entries, classes


def _read_hacs(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """HACS v1.1(.1): Clips ``HACS_clips_v1.1*.csv`` (``classname,youtube_id,subset,start,end,label`` with
    label 1 = positive, -1 = negative) or Segments ``HACS_segments_v1.1*.json`` (ActivityNet style,
    ``{"database": {id: {"subset", "annotations": [{"label", "segment": [start, end]}]}}}``).

    One row per positive clip or per segment; negatives and unlabelled test rows are skipped and counted.
    HACS videos are the full YouTube videos (``<Class_Name>/v_<youtube_id>.mp4``, as the official downloader
    names them), so rows carry ``cut=1``: the clip is ``[time_start, time_end]`` seconds of ``source``.
    """
    if root.is_file():
        path = root
    else:
        path = _one_file(root, r"HACS_clips.*\.csv", "HACS clips CSV", required=False)
        path = path or _one_file(root, r"HACS_segments.*\.json", "HACS clips CSV or segments JSON")
    raw: list[tuple[str, str, str, float, float, str]] = []
    if path.suffix.lower() == ".csv":
        records = _read_csv(path)
        header = [h.strip() for h in records[0][1]] if records else []
        needed = ["classname", "youtube_id", "subset", "start", "end", "label"]
        if header[:6] != needed:
            raise VidnetError(f"{path}:1: not a HACS clips CSV: the header must start {','.join(needed)}")
        for n, rec in records[1:]:
            where = f"{path}:{n}"
            if len(rec) < 6:
                raise VidnetError(f"{where}: {len(rec)} fields, expected 6")
            cls, yid, subset, start, end, sign = (c.strip() for c in rec[:6])
            try:
                polarity = int(float(sign))
            except ValueError:
                polarity = None
            if polarity not in (1, -1, 0):
                raise VidnetError(f"{where}: label must be 1 (positive), -1 (negative) or 0, got {sign!r}")
            if polarity != 1:
                issues.skipped["negative" if polarity == -1 else "unlabelled"] += 1
                continue
            raw.append((cls, yid, subset, _number(start, where, "start"), _number(end, where, "end"), where))
    else:
        data = _read_json(path)
        db = data.get("database") if isinstance(data, dict) else None
        if not isinstance(db, dict):
            raise VidnetError(f"{path}: not a HACS segments file: no 'database' object")
        for yid, info in db.items():
            where = f"{path}:database.{yid}"
            if not isinstance(info, dict) or "subset" not in info:
                raise VidnetError(f"{where}: expected an object with 'subset' and 'annotations'")
            annos = info.get("annotations") or []
            if not annos:
                issues.skipped["unlabelled"] += 1
            for j, anno in enumerate(annos):
                seg = anno.get("segment") if isinstance(anno, dict) else None
                if not isinstance(seg, list) or len(seg) != 2 or "label" not in anno:
                    raise VidnetError(f"{where}.annotations[{j}]: expected {{'label', 'segment': [start, end]}}")
                raw.append((anno["label"], yid, info["subset"], float(seg[0]), float(seg[1]),
                            f"{where}.annotations[{j}]"))
    entries = []
    for cls, yid, subset, t0, t1, where in raw:
        if t1 < t0:
            raise VidnetError(f"{where}: end {t1:g} is before start {t0:g}")
        label = cls.strip()
        folder = label.replace(" ", "_")
        alts = (f"{folder}/v_{yid}", f"{label}/v_{yid}", f"v_{yid}", yid)
        entries.append(_Entry(label, yid, normalise_split(subset), where, f"{folder}/v_{yid}{preset.extension}",
                              alternates=alts, time_start=t0, time_end=t1, extra={"cut": "1"}))
    train_labels = sorted({e.label for e in entries if e.split == "train"})
    return entries, train_labels or sorted({e.label for e in entries})


def _read_mit(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """Moments in Time: ``moments_categories.txt`` (``<class>,<id>``), ``trainingSet.csv`` and
    ``validationSet.csv`` (no header: ``<class>/<file>.mp4,<class>,<agree>,<disagree>``); videos under
    ``training/`` and ``validation/``.
    """
    cat_file = _one_file(root, r"(moments_)?categories\.txt", "MiT class list (moments_categories.txt)")
    classes: dict[str, int] = {}
    for n, line in _read_lines(cat_file):
        name, sep, idx = line.rpartition(",")
        if not sep or not idx.strip().isdigit():
            raise VidnetError(f"{cat_file}:{n}: expected '<class>,<id>', got {line!r}")
        classes[name.strip()] = int(idx)
    entries = []
    for split, folder, pattern in (("train", "training", r"trainingSet\.csv"), ("val", "validation",
                                                                              r"validationSet\.csv")):
        path = _one_file(root, pattern, f"MiT {folder} list", required=split == "train")
        if path is None:
            continue
        for n, rec in _read_csv(path):
            where = f"{path}:{n}"
            if len(rec) < 2:
                raise VidnetError(f"{where}: expected '<path>,<class>,...', got {','.join(rec)!r}")
            rel, label = rec[0].strip().replace("\\", "/"), rec[1].strip()
            if label not in classes:
                issues.unknown_class(label, where)
                continue
            parent, _, name = rel.rpartition("/")
            if parent and parent != label:
                issues.conflicts.append({"video": rel, "where": where, "detail": f"folder {parent!r}, class {label!r}"})
            raw_id = _stem(rel)
            entries.append(_Entry(label, _stem(name), split, where, f"{folder}/{rel}",
                                  alternates=(f"{folder}/{raw_id}", raw_id), extra={"_key": raw_id}))
    return entries, sorted(classes)


def _read_srtg(root: Path, issues: _Issues, preset: DatasetPreset, split_number: int):
    """The original SRTG repository's converted CSVs (``label,id|youtube_id[,time_start,time_end][,split]``,
    e.g. ``ucf101_split1_train.csv``), taken as they are. A folder is read for every ``*.csv``.

    The split is read from the file name (``train``/``val``/``test`` in it), as the original code does, else
    from the ``split`` column. Videos are ``<label>/<id>[_<start:06d>_<end:06d>]``: a frames folder or a file,
    at the root or under ``jpg/``.
    """
    files = [root] if root.is_file() else sorted(root.glob("*.csv"))
    if not files:
        raise UsageError(f"{root}: no CSV files found")
    entries = []
    for path in files:
        for n, row in enumerate(read_index(path), start=2):
            split = _split_from_name(path.name) or normalise_split(row.split)
            name = row.dir_name
            entries.append(_Entry(row.label, row.id, split, f"{path}:{n}", f"{row.label}/{name}",
                                  alternates=(f"{row.label}/{name}", f"jpg/{row.label}/{name}"),
                                  time_start=row.time_start, time_end=row.time_end))
    return entries, None


_READERS: dict[str, Callable[..., tuple[list[_Entry], list[str] | None]]] = {
    "ucf101": _read_ucf101,
    "hmdb51": _read_hmdb51,
    "kinetics400": _read_kinetics,
    "kinetics600": _read_kinetics,
    "kinetics700": _read_kinetics,
    "jester": _read_twentybn,
    "sthv1": _read_twentybn,
    "sthv2": _read_sthv2,
    "diving48": _read_diving48,
    "hacs": _read_hacs,
    "mit": _read_mit,
    "srtg": _read_srtg,
}


# --------------------------------------------------------------------------------------------------------------
# Finding videos on disk


class _Listing:
    """One folder's entries, indexed for exact, stem and case-insensitive lookups."""

    def __init__(self, entries: dict[str, bool]) -> None:
        self.is_dir = entries
        self.stems: dict[str, str] = {}
        self.lower: dict[str, str] = {}
        self.lower_stems: dict[str, str] = {}
        for name in sorted(entries):
            self.lower.setdefault(name.lower(), name)
            if not entries[name] and _stem(name) != name:
                self.stems.setdefault(_stem(name), name)
                self.lower_stems.setdefault(_stem(name).lower(), name)

    def match(self, base: str) -> str | None:
        if base in self.is_dir:
            return base
        stem = _stem(base)
        return self.stems.get(stem) or self.lower.get(base.lower()) or self.lower_stems.get(stem.lower())


class _Finder:
    """Looks up videos under a root, listing each folder once (Kinetics has 650k files: no stat per guess)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[str, _Listing | None] = {}
        self._resolved: dict[str, str | None] = {}

    def _listing(self, rel_dir: str) -> _Listing | None:
        """The entries of a folder given relative to the root (None if it does not exist)."""
        if rel_dir not in self._dirs:
            try:
                with os.scandir(self.root / rel_dir if rel_dir else self.root) as it:
                    self._dirs[rel_dir] = _Listing({e.name: e.is_dir() for e in it})
            except (FileNotFoundError, NotADirectoryError):
                self._dirs[rel_dir] = None
        return self._dirs[rel_dir]

    def _resolve_dir(self, rel_dir: str) -> str | None:
        """The real spelling of a folder, matching each part exactly or else ignoring case."""
        if rel_dir not in self._resolved:
            out: str | None = ""
            for part in [p for p in rel_dir.split("/") if p]:
                listing = self._listing(out)
                if listing is None:
                    out = None
                    break
                real = part if listing.is_dir.get(part) else listing.lower.get(part.lower())
                if real is None or not listing.is_dir[real]:
                    out = None
                    break
                out = f"{out}/{real}" if out else real
            self._resolved[rel_dir] = out
        return self._resolved[rel_dir]

    def find(self, names: Iterable[str]) -> str | None:
        """The first of ``names`` (relative paths, with or without a video extension) present on disk.

        A name matches a folder or file of that exact name, then a video file with that stem, then the same
        ignoring case.
        """
        for name in names:
            parent, _, base = name.rpartition("/")
            real_parent = self._resolve_dir(parent)
            listing = None if real_parent is None else self._listing(real_parent)
            hit = None if listing is None else listing.match(base)
            if hit is not None:
                return f"{real_parent}/{hit}" if real_parent else hit
        return None


# --------------------------------------------------------------------------------------------------------------
# Assembling the index


def read_annotations(
    dataset: str, annotations: str | os.PathLike, *, split_number: int = 1
) -> tuple[list[_Entry], list[str] | None, _Issues]:
    """Parse a dataset's official annotation files (no disk lookup, no writing).

    Returns:
        entries (one per annotated video listing), the official class list (None if the format has none) and
        the non-fatal findings.

    Raises:
        UsageError: unknown dataset, or an annotation file is missing.
        VidnetError: a malformed annotation file (the message names file:line and the reason).
    """
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if split_number not in (1, 2, 3):
        raise UsageError(f"--split-number must be 1, 2 or 3, got {split_number}")
    root = Path(annotations)
    if not root.exists():
        raise UsageError(f"{root}: annotations not found")
    issues = _Issues()
    entries, classes = _READERS[dataset](root, issues, DATASETS[dataset], split_number)
    return entries, classes, issues


def prepare(
    dataset: str,
    annotations: str | os.PathLike,
    *,
    videos: str | os.PathLike | None = None,
    split_number: int = 1,
) -> PreparedDataset:
    """Read a dataset's official annotations and build vidnet's index, label map, preset and report.

    Args:
        dataset: one of :data:`DATASETS` (``ucf101``, ``hmdb51``, ``kinetics400``/``600``/``700``, ``jester``,
            ``sthv1``, ``sthv2``, ``diving48``, ``hacs``, ``mit``, ``srtg``).
        annotations: the folder of official annotation files (or, for single-file formats, the file).
        videos: the folder of videos or frame folders; when given, every video is looked up and ``source``
            records where it was found (empty and counted as missing when not found). When None, nothing is
            checked and ``source`` holds the expected path.
        split_number: UCF-101 / HMDB-51 split (1, 2 or 3) that fills the ``split`` column; all three are kept
            in ``split1``..``split3``.

    Returns:
        The prepared dataset; :func:`write_prepared` writes it.

    Raises:
        UsageError: unknown dataset, missing annotation file or videos folder.
        VidnetError: malformed annotation file (file:line and reason).
    """
    preset = DATASETS.get(dataset)
    entries, classes, issues = read_annotations(dataset, annotations, split_number=split_number)
    if classes is not None:
        known = set(classes)
        for e in entries:
            if e.label not in known:
                issues.unknown_class(e.label, e.where)
        entries = [e for e in entries if e.label in known]
    finder = None
    if videos is not None:
        if not Path(videos).is_dir():
            raise UsageError(f"{videos}: videos folder not found")
        finder = _Finder(Path(videos))
    report = PrepareReport(dataset, str(annotations), None if videos is None else str(videos),
                           expected_classes=preset.num_classes)
    multi = any("_split_number" in e.extra for e in entries)
    merged = _assemble(entries, report, split_number=split_number if multi else None)
    rows = [row for row, _ in merged]

    rename_labels: dict[str, str] = {}
    for row in rows:
        safe = safe_label(row.label)
        if safe != row.label and row.label not in rename_labels:
            rename_labels[row.label] = safe
            report.renamed.append({"label": row.label, "to": safe})
    for row in rows:
        row.label = rename_labels.get(row.label, row.label)
    _assign_ids(rows, report)

    found: Counter[str] = Counter()
    for row, entry in merged:
        if finder is None:
            row.extra["source"] = entry.expected
            continue
        hit = finder.find([entry.expected, *entry.alternates])
        row.extra["source"] = hit or ""
        if hit is None:
            report.missing.append(entry.expected)
        else:
            found[row.split] += 1
    if finder is not None:
        report.found = dict(found)
    report.missing.sort()

    names = {rename_labels.get(c, safe_label(c)) for c in classes} if classes is not None else set()
    labels = label_map(names | {r.label for r in rows})
    report.classes = len(labels)
    report.splits = dict(Counter(r.split for r in rows))
    report.unknown_classes = issues.unknown
    report.conflicting_labels += issues.conflicts
    report.skipped = dict(issues.skipped)
    report.notes += issues.notes
    if classes is not None and (unused := sorted(set(classes) - {r.label for r in rows})):
        report.notes.append(f"{len(unused)} classes have no video: {', '.join(unused[:10])}"
                            + (" ..." if len(unused) > 10 else ""))
    if preset.num_classes is not None and len(labels) != preset.num_classes:
        report.notes.append(f"{len(labels)} classes, the official {dataset} has {preset.num_classes}")
    return PreparedDataset(rows, labels, preset, report)


def _assemble(
    entries: list[_Entry], report: PrepareReport, *, split_number: int | None
) -> list[tuple[IndexRow, _Entry]]:
    """Merge entries into one row per video (with the entry that created it), recording duplicates, split and
    label conflicts. ``split_number`` set: entries carry UCF/HMDB split numbers, merged into split1..split3."""
    rows: dict[tuple, tuple[IndexRow, _Entry]] = {}
    first: dict[tuple, dict[str, _Entry]] = defaultdict(dict)  # key -> split number -> first entry
    for e in entries:
        k = e.extra.get("_split_number", "")
        key = (e.extra.get("_key", ""), *e.key)
        prev = first[key].get(k)
        if prev is not None:
            info = {"video": e.expected, "where": e.where, "first": prev.where}
            if prev.label != e.label:
                report.conflicting_labels.append({**info, "detail": f"class {e.label!r}, first {prev.label!r}"})
            elif prev.split != e.split:
                report.in_two_splits.append({**info, "detail": f"{e.split}, first {prev.split}"})
            else:
                report.duplicates.append(info)
            continue
        first[key][k] = e
        if key not in rows:
            extra = {k2: v for k2, v in e.extra.items() if not k2.startswith("_")}
            rows[key] = (IndexRow(e.label, e.raw_id, e.time_start, e.time_end, "" if k else e.split, extra=extra), e)
        row = rows[key][0]
        if row.label != e.label:
            report.conflicting_labels.append({"video": e.expected, "where": e.where,
                                              "detail": f"class {e.label!r} in split {k}, {row.label!r} before"})
        if k:
            row.extra[f"split{k}"] = e.split
    if split_number is not None:
        for row, _ in rows.values():
            row.split = row.extra.get(f"split{split_number}", "")
            ordered = {f"split{i}": row.extra.pop(f"split{i}", "") for i in (1, 2, 3)}
            row.extra = {**ordered, **row.extra}
    return list(rows.values())


def _assign_ids(rows: list[IndexRow], report: PrepareReport) -> None:
    """Make ids safe and unique per class folder, in a stable order (sorted by original id and time)."""
    taken: dict[str, set[str]] = defaultdict(set)
    for row in sorted(rows, key=lambda r: (r.label, r.id, r.time_start or 0.0, r.time_end or 0.0)):
        base = safe_id(row.id)
        if not base:
            raise VidnetError(f"{row.label}: empty video id")
        new, n = base, 1
        while video_dir_name(new, row.time_start, row.time_end) in taken[row.label]:
            n += 1
            new = f"{base}_dup{n}"
        taken[row.label].add(video_dir_name(new, row.time_start, row.time_end))
        if new != row.id:
            report.renamed.append({"id": row.id, "to": new})
            row.id = new


def write_prepared(prepared: PreparedDataset, out: str | os.PathLike) -> list[Path]:
    """Write ``index.csv``, ``labels.json``, ``dataset.json`` and ``prepare-report.json`` into ``out``.

    All four are written to temporary files first and renamed only when every one is complete, so a failure
    leaves no partial output.

    Returns:
        The paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / n for n in ("index.csv", "labels.json", "dataset.json", "prepare-report.json")]
    with ExitStack() as stack:
        tmp = [stack.enter_context(atomic_path(p)) for p in paths]
        write_index(tmp[0], prepared.rows)
        write_labels(tmp[1], prepared.labels)
        tmp[2].write_text(json.dumps(prepared.dataset_json(), indent=2) + "\n", encoding="utf-8")
        tmp[3].write_text(json.dumps(prepared.report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    log.info("wrote %s (%d rows, %d classes)", out / "index.csv", len(prepared.rows), len(prepared.labels))
    return paths
