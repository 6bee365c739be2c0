"""Sharded conversion: ``vidnet convert SRC DST --shard K/N`` on many machines, then ``vidnet convert DST --merge``.

A video belongs to shard ``shard_of(key, N)``, a stable hash (SHA-1, never Python's salted ``hash``) of its
key ``<label>/<folder>``: every process computes the same partition, whatever the order it listed the videos
in, and adding videos to SRC moves none of the others to another shard.

Every shard lists the whole SRC (or reads the whole index) and fixes the label map from the full list, so all
shards agree on label ids before any of them runs; each converts only its own videos into the shared DST,
with the usual atomic, resumable store writes, and records what it did in three part files of its own:

* ``index.shard-K-of-N.csv``: the index rows of its complete stores;
* ``convert-errors.shard-K-of-N.csv``: its problems (the listing's problems are in every shard's file);
* ``convert-summary.shard-K-of-N.json``: its counts, the label map, the options that shape a store, and
  ``finished`` (false until the shard's run ended without being interrupted).

A shard never writes ``index.csv`` or ``labels.json``; the merge builds them from the parts and the stores
on disk (`vidnet.data.index.refresh_index`), after checking that the parts of every shard are there,
finished, and agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from vidnet._io import atomic_write_json
from vidnet.errors import UsageError, VidnetError

__all__ = ["Shard", "parse_shard", "shard_of", "part_name", "ShardPart", "read_parts", "check_parts"]

_PART = re.compile(r"^convert-summary\.shard-(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` (1-based, as written on the command line: ``--shard 2/3``)."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> `Shard`; `UsageError` (exit 2) unless 1 <= K <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"--shard must be K/N, e.g. 2/8 (got {text!r})")
    k, n = int(m[1]), int(m[2])
    if not 1 <= k <= n:
        raise UsageError(f"--shard K/N needs 1 <= K <= N (got {text!r}; SLURM array ids start at 0: use "
                         "$((SLURM_ARRAY_TASK_ID+1))/N)")
    return Shard(k, n)


def shard_of(key: str, n: int) -> int:
    """The shard (1..n) of the video whose key (``<label>/<folder>``) is ``key``."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def part_name(stem: str, shard: Shard, ext: str) -> str:
    """``<stem>.shard-K-of-N.<ext>``: ``part_name("index", Shard(2, 3), "csv") == "index.shard-2-of-3.csv"``."""
    return f"{stem}.shard-{shard.k}-of-{shard.n}.{ext}"


@dataclass
class ShardPart:
    """What one shard recorded in ``convert-summary.shard-K-of-N.json``."""

    shard: Shard
    finished: bool
    labels: dict[str, int]
    options: dict
    counts: dict[str, float]
    path: Path


def write_summary_part(dst: Path, shard: Shard, *, finished: bool, labels: dict[str, int], options: dict,
                       counts: dict[str, float]) -> Path:
    """Write (atomically) a shard's summary part; returns its path."""
    path = dst / part_name("convert-summary", shard, "json")
    atomic_write_json(path, {"shard": shard.k, "of": shard.n, "finished": finished, "options": options,
                             "counts": counts, "labels": labels})
    return path


def read_parts(dst: Path) -> list[ShardPart]:
    """Every shard summary part in ``dst``, sorted by (N, K); `VidnetError` naming a part that does not read."""
    parts = []
    for path in sorted(dst.glob("convert-summary.shard-*-of-*.json")):
        m = _PART.match(path.name)
        if m is None:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            part = ShardPart(Shard(int(data["shard"]), int(data["of"])), bool(data["finished"]),
                             {str(k): int(v) for k, v in data["labels"].items()}, dict(data["options"]),
                             dict(data["counts"]), path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise VidnetError(f"{path}: not a readable shard summary ({type(err).__name__}: {err})") from None
        if (part.shard.k, part.shard.n) != (int(m[1]), int(m[2])):
            raise VidnetError(f"{path}: records shard {part.shard}, its name says {m[1]}/{m[2]}")
        parts.append(part)
    return sorted(parts, key=lambda p: (p.shard.n, p.shard.k))


def check_parts(dst: Path, parts: list[ShardPart]) -> int:
    """Check that ``parts`` are the finished parts of one sharded conversion; returns N.

    Raises:
        UsageError: (exit 2, one line) no parts; parts of different N; a shard missing or unfinished; shards
            that disagree on the label map or on the options that shape a store.
    """
    if not parts:
        raise UsageError(f"{dst}: no shard parts (convert-summary.shard-K-of-N.json) to merge; run "
                         "`vidnet convert SRC DST --shard K/N` for every K first")
    ns = sorted({p.shard.n for p in parts})
    if len(ns) > 1:
        raise UsageError(f"{dst}: shards disagree: parts of {' and '.join(f'N={n}' for n in ns)} conversions; "
                         "remove the parts of the run you abandoned")
    n = ns[0]
    have = {p.shard.k for p in parts}
    missing = [k for k in range(1, n + 1) if k not in have]
    if missing:
        listed = ", ".join(f"{k}/{n}" for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise UsageError(f"{dst}: cannot merge: {len(missing)} of {n} shard(s) missing ({listed}); run them "
                         "(or re-run them: a shard resumes) before merging")
    unfinished = [str(p.shard) for p in parts if not p.finished]
    if unfinished:
        raise UsageError(f"{dst}: cannot merge: shard(s) {', '.join(unfinished)} did not finish (interrupted or "
                         "still running); re-run them before merging")
    first = parts[0]
    for p in parts[1:]:
        if p.labels != first.labels:
            diff = sorted(set(p.labels.items()) ^ set(first.labels.items()))[:3]
            raise UsageError(f"{dst}: shards disagree: shard {p.shard} has other label ids than shard "
                             f"{first.shard} (e.g. {', '.join(f'{k}={v}' for k, v in diff)}); were they run on "
                             "the same SRC and index?")
        if p.options != first.options:
            keys = sorted(k for k in {*p.options, *first.options} if p.options.get(k) != first.options.get(k))
            diff = ", ".join(f"{k}: {first.options.get(k)!r} vs {p.options.get(k)!r}" for k in keys)
            raise UsageError(f"{dst}: shards disagree: shard {p.shard} was run with other options than shard "
                             f"{first.shard} ({diff})")
    return n
