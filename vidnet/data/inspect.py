"""``vidnet info``: what a converted dataset or a single frames.db holds, and whether it is sound."""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vidnet._io import inside
from vidnet.data.index import read_index, read_labels, split_warnings
from vidnet.data.ingest import ERRORS_NAME
from vidnet.data.store import STORE_NAME, FrameStore, jpeg_size, read_n_frames_file
from vidnet.errors import StoreError, UsageError

__all__ = ["StoreReport", "DatasetReport", "inspect_store", "inspect_dataset"]


@dataclass
class StoreReport:
    """Metadata and validity of one store."""

    path: str
    n_frames: int
    width: int
    height: int
    fps: float
    bytes: int
    writer: str
    vidnet_format: int
    source_name: str
    source_size: int
    source_checksum: str
    jpeg_quality: int
    n_frames_file: int | None
    notes: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_store(path: str | os.PathLike, *, verify: bool = True) -> StoreReport:
    """Describe one ``frames.db`` (or its folder); with ``verify`` decode every frame."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    with FrameStore(path) as store:
        problems = store.verify() if verify else []
        n_file = read_n_frames_file(folder)
        if n_file is not None and n_file != len(store):
            problems.append(f"n_frames file says {n_file}, the store holds {len(store)}")
        m = store.meta
        height, width = m.height, m.width
        if not height and len(store):
            try:  # the header, not a decode: a frame may be huge (the verify above refused it)
                height, width = jpeg_size(store.get_bytes([0])[0])
            except StoreError as err:
                problems.append(f"frame 0: {err}")
        return StoreReport(
            path=str(store.path), n_frames=len(store), width=width, height=height, fps=m.fps,
            bytes=store.path.stat().st_size, writer=m.writer or "dataset2database (no meta)",
            vidnet_format=m.format_version, source_name=m.source_name, source_size=m.source_size,
            source_checksum=m.source_checksum, jpeg_quality=m.jpeg_quality, n_frames_file=n_file,
            notes=list(m.notes), problems=problems,
        )


@dataclass
class DatasetReport:
    """Totals of a converted dataset."""

    root: str
    videos: int = 0
    classes: int = 0
    frames: int = 0
    bytes: int = 0
    frame_sizes: dict[str, int] = field(default_factory=dict)
    shortest: tuple[str, int] | None = None
    longest: tuple[str, int] | None = None
    per_class: dict[str, int] = field(default_factory=dict)
    per_split: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    warnings: int = 0
    missing_stores: list[str] = field(default_factory=list)
    bad_stores: dict[str, list[str]] = field(default_factory=dict)
    unknown_labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing or bad store, and every label has an id."""
        return not (self.missing_stores or self.bad_stores or self.unknown_labels)

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_dataset(root: str | os.PathLike, *, verify: bool = False) -> DatasetReport:
    """Summarise a converted dataset (``index.csv`` + stores).

    ``verify`` decodes every frame and checks the frame counts (``n_frames`` file and ``index.csv``) against
    each store. ``classes`` counts the labels of ``labels.json`` and of the index; index labels without an
    id are listed in ``unknown_labels``.

    Raises:
        VidnetError: ``index.csv`` is unreadable, or has a bad or duplicate row (naming the lines).
    """
    root = Path(root)
    if not (root / "index.csv").is_file():
        raise UsageError(f"{root}: no index.csv (not a converted dataset; convert it with `vidnet convert`)")
    rows = read_index(root / "index.csv")
    labels = read_labels(root / "labels.json") if (root / "labels.json").is_file() else {}
    rep = DatasetReport(root=str(root))
    sizes: Counter[str] = Counter()
    for row in rows:
        rel = row.path or f"{row.label}/{row.dir_name}"
        if inside(root, rel, resolve=False) is None:  # read_index refuses such rows already
            rep.bad_stores[rel] = [f"outside {root}"]
            continue
        store_path = root / rel / STORE_NAME
        if not store_path.is_file():
            rep.missing_stores.append(rel)
            continue
        rep.videos += 1
        rep.bytes += store_path.stat().st_size
        n = row.n_frames
        try:
            with FrameStore(store_path) as store:
                n = len(store)
                if store.meta.width and store.meta.height:
                    sizes[f"{store.meta.width}x{store.meta.height}"] += 1
                if verify:
                    problems = store.verify()
                    n_file = read_n_frames_file(store_path.parent)
                    if n_file is not None and n_file != n:
                        problems.append(f"n_frames file says {n_file}, the store holds {n}")
                    if row.n_frames and row.n_frames != n:
                        problems.append(f"index.csv says {row.n_frames} frames, the store holds {n}")
                    if problems:
                        rep.bad_stores[rel] = problems
        except StoreError as err:
            rep.bad_stores[rel] = [str(err)]
            continue
        rep.frames += n
        if rep.shortest is None or n < rep.shortest[1]:
            rep.shortest = (rel, n)
        if rep.longest is None or n > rep.longest[1]:
            rep.longest = (rel, n)
        rep.per_class[row.label] = rep.per_class.get(row.label, 0) + 1
        rep.per_split[row.split or "(none)"] = rep.per_split.get(row.split or "(none)", 0) + 1
    rep.unknown_labels = sorted({r.label for r in rows} - set(labels)) if labels else []
    rep.classes = len(set(labels) | {r.label for r in rows})
    rep.notes = split_warnings(rows)
    rep.frame_sizes = dict(sizes.most_common())
    rep.per_class = dict(sorted(rep.per_class.items()))
    errors = root / ERRORS_NAME
    if errors.is_file():
        with open(errors, newline="") as f:
            for rec in csv.DictReader(f):
                if rec.get("severity") == "warning":
                    rep.warnings += 1
                else:
                    rep.failures += 1
    return rep
