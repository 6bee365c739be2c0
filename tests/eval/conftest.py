"""Fixtures of the evaluation tests: see tests/conftest.py (`tiny_dataset`, `tiny_checkpoint`), and a dataset of
segments cut from one source video."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def segment_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted dataset of one-second segments cut from the sample videos (``index.csv`` with
    ``time_start,time_end`` and ``cut=1``): 2 classes x 2 source videos x 2 segments, so every id repeats.

    The first video of each class gives the ``train`` segments, the second the ``val`` ones.
    """
    from vidnet.data.index import read_index, write_index
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    base = tmp_path_factory.mktemp("segment_dataset")
    videos, frames = base / "videos", base / "frames"
    make_sample_dataset(videos, SampleOptions(classes=2, videos_per_class=2, min_frames=50, max_frames=50,
                                              width=64, height=48, workers=1))
    rows = []
    for n, row in enumerate(read_index(videos / "index.csv")):
        for start in (0, 1):
            rows.append(dataclasses.replace(row, time_start=float(start), time_end=float(start + 1),
                                            split="train" if n % 2 == 0 else "val", extra={**row.extra, "cut": "1"}))
    write_index(videos / "index.csv", rows)
    summary = convert_dataset(videos, frames, ConvertOptions(workers=1))
    assert summary.failed == 0, summary.problems
    return frames
