"""The default train/val split of a dataset converted from class folders: stratified, deterministic.

Each class is split on its own, so every class with two videos or more has both train and val videos in the
given proportion (a plain hash threshold over all videos left a class without any val video at 0.5). Within a
class the videos are ordered by a stable hash of ``label/id`` (CRC-32), so the split depends only on the names,
never on the listing order, the machine or a random seed.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable

__all__ = ["DEFAULT_VAL_FRACTION", "stratified_split"]

DEFAULT_VAL_FRACTION = 0.2
"""Share of each class in split ``val`` when class folders are converted without ``--val-fraction``."""


def stratified_split(videos: Iterable[tuple[str, str]], val_fraction: float) -> dict[tuple[str, str], str]:
    """``{(label, video_id): "train" | "val"}``: per class, ``round(n * val_fraction)`` videos in ``val``, at
    least one and never all when the class has two or more (a class of one video trains).

    Args:
        videos: ``(label, video_id)`` pairs (unique).
        val_fraction: Share of each class in ``val``, in [0, 1); 0 puts everything in ``train``.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for label, video_id in videos:
        by_class[label].append(video_id)
    out = {}
    for label, ids in by_class.items():
        ranked = sorted(ids, key=lambda v: (zlib.crc32(f"{label}/{v}".encode()), v))
        n_val = round(len(ranked) * val_fraction)
        if val_fraction > 0 and len(ranked) >= 2:
            n_val = min(max(n_val, 1), len(ranked) - 1)
        for rank, video_id in enumerate(ranked):
            out[(label, video_id)] = "val" if rank < n_val else "train"
    return out
