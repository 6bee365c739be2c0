"""A JPEG whose header claims 60000x60000 pixels (10 GiB decoded): refused from its header everywhere a
frame is decoded, under a memory limit that a decode would exceed."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.data.store import StoreMeta, StoreWriter, encode_jpeg
from vidnet.testing import moving_frames

from .conftest import bomb_jpeg, vidnet

LIMIT_GIB = 3.0  # far above what the commands need, far below a 60000x60000 decode


def _store_with_bomb(folder, position: int = 1):
    """A vidnet store of 3 frames, frame ``position`` replaced by the bomb (its header is all that lies)."""
    frames = moving_frames(3, 32, 32)
    with StoreWriter(folder) as w:
        for f in frames:
            w.add_rgb(f, 90)
        w.commit(StoreMeta())
    con = sqlite3.connect(folder / "frames.db")
    con.execute("UPDATE Images SET frames = ? WHERE rowid = ?", (bomb_jpeg(), position + 1))
    con.commit()
    con.close()
    return folder


def test_info_on_a_store_refuses_the_frame_under_a_memory_limit(tmp_path):
    store = _store_with_bomb(tmp_path / "lbl" / "v")
    res = vidnet("info", store / "frames.db", "--json", memory_gib=LIMIT_GIB)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "MemoryError" not in res.stderr + res.stdout
    assert json.loads(res.stdout)["problems"] == ["frame 1: frame of 60000x60000 pixels is above the 8192-pixel limit"]


def test_dataset_verify_refuses_the_frame_under_a_memory_limit(tiny_dataset, tmp_path):
    import shutil

    from vidnet.data.index import read_index

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    row = read_index(root / "index.csv")[0]
    con = sqlite3.connect(root / row.path / "frames.db")
    con.execute("UPDATE Images SET frames = ? WHERE rowid = 2", (bomb_jpeg(),))
    con.commit()
    con.close()
    res = vidnet("info", root, "--verify", "--json", memory_gib=LIMIT_GIB)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "above the 8192-pixel limit" in res.stdout and row.path in res.stdout


@pytest.mark.slow
def test_clip_reader_raises_a_clip_error_under_a_memory_limit(tiny_dataset, tmp_path):
    import shutil
    import subprocess
    import sys
    import textwrap

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    code = textwrap.dedent(f"""
        import resource, sqlite3, numpy as np
        resource.setrlimit(resource.RLIMIT_AS, ({int(LIMIT_GIB * 2**30)}, {int(LIMIT_GIB * 2**30)}))
        from vidnet.data.dataset import VideoClipDataset
        from vidnet.data.sampling import CentreClip
        from vidnet.errors import ClipError
        ds = VideoClipDataset({str(root)!r}, split=None, num_frames=4, size=32)
        con = sqlite3.connect({str(root)!r} + "/" + ds.rows[0].path + "/frames.db")
        con.execute("UPDATE Images SET frames = ?", ({bomb_jpeg()!r},))
        con.commit()
        try:
            ds[0]
        except ClipError as err:
            print("ClipError", err.reason, err)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("ClipError corrupt") and "8192-pixel limit" in res.stdout


def test_frame_folder_skips_the_frame_and_reports_it(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    folder = src / "walk" / "v1"
    folder.mkdir(parents=True)
    for i, f in enumerate(moving_frames(4, 32, 32)):
        (folder / f"{i:05d}.jpg").write_bytes(encode_jpeg(f))
    (folder / "00002.jpg").write_bytes(bomb_jpeg())
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (1, 0)
    assert s.rows[0].n_frames == 3
    with open(dst / "convert-errors.csv", newline="") as f:
        (rec,) = csv.DictReader(f)
    assert rec["severity"] == "warning"
    assert rec["reason"] == "00002.jpg: frame of 60000x60000 pixels is above the 8192-pixel limit, skipped"


def test_frame_folder_resized_skips_the_frame_under_a_memory_limit(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    folder = src / "walk" / "v1"
    folder.mkdir(parents=True)
    for i, f in enumerate(moving_frames(3, 32, 32)):
        (folder / f"{i:05d}.jpg").write_bytes(encode_jpeg(f))
    (folder / "00001.jpg").write_bytes(bomb_jpeg())
    res = vidnet("convert", src, dst, "--short-side", "16", "--workers", "1", memory_gib=LIMIT_GIB)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "8192-pixel limit" in (dst / "convert-errors.csv").read_text()
