"""Sharded conversion (``vidnet convert SRC DST --shard K/N``, then ``--merge``): the shards, run as concurrent
processes, build the same dataset as one process; a killed shard resumes; a merge refuses missing or
disagreeing shards; shards share DST but exclude a plain conversion."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidnet._io import dir_lock
from vidnet.data.index import read_index
from vidnet.data.ingest import ConvertOptions, convert_dataset, merge_shards
from vidnet.data.sample import SampleOptions, make_sample_dataset
from vidnet.data.shards import Shard, parse_shard, shard_of
from vidnet.data.store import FrameStore
from vidnet.errors import UsageError
from vidnet.testing import write_test_video

from ..hostile.conftest import one_line_error


def _vidnet(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidnet", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def _shard_cmd(src: Path, dst: Path, shard: str) -> list[str]:
    return [sys.executable, "-m", "vidnet", "convert", str(src), str(dst), "--shard", shard, "--workers", "1", "-q"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """`vidnet sample`'s dataset, small: 3 classes x 4 videos of 8-12 frames at 64x48, with index.csv."""
    src = tmp_path_factory.mktemp("shards") / "videos"
    make_sample_dataset(src, SampleOptions(classes=3, videos_per_class=4, min_frames=8, max_frames=12, width=64,
                                           height=48, workers=1))
    (src / "move_left" / "broken.mp4").write_bytes(b"not a video")  # a failure travels through the parts too
    with open(src / "index.csv", "a") as f:
        f.write("move_left,broken,,,train,0,,move_left/broken.mp4,12\n")
    return src


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("frames.db"))}


@pytest.mark.slow
def test_three_concurrent_shards_then_merge_equal_one_process(sample, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    convert_dataset(sample, single, ConvertOptions(workers=1))
    procs = [subprocess.Popen(_shard_cmd(sample, sharded, f"{k}/3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in (1, 2, 3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert not (sharded / "index.csv").exists() and not (sharded / "labels.json").exists()  # only the merge writes
    parts = [read_index(sharded / f"index.shard-{k}-of-3.csv") for k in (1, 2, 3)]
    for k, rows in enumerate(parts, start=1):  # each shard converted exactly its hash partition
        assert rows and all(shard_of(r.path, 3) == k for r in rows)
    res = _vidnet("convert", sharded, "--merge")
    assert res.returncode == 0, res.stderr
    assert "merged 3 shards" in res.stdout + res.stderr
    for name in ("index.csv", "labels.json", "convert-errors.csv"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    assert "broken.mp4" in (sharded / "convert-errors.csv").read_text()
    assert sorted(r.path for rows in parts for r in rows) == sorted(r.path for r in read_index(single / "index.csv"))
    stores = _files(single)
    assert len(stores) == 12 and _files(sharded) == stores  # every store byte-identical
    summary = json.loads((sharded / "convert-summary.json").read_text())
    assert (summary["shards"], summary["stores"], summary["converted"], summary["failed"]) == (3, 12, 12, 1)
    before = {p.name: p.read_bytes() for p in sharded.iterdir() if p.is_file() and p.name[0] != "."}
    res = _vidnet("convert", sharded, "--merge")  # idempotent
    assert res.returncode == 0, res.stderr
    assert {p.name: p.read_bytes() for p in sharded.iterdir() if p.is_file() and p.name[0] != "."} == before


@pytest.mark.slow
def test_shard_killed_mid_run_refuses_merge_then_resumes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(8):
        write_test_video(src / f"c{i % 2}" / f"v{i}.mp4", 40, height=120, width=160, seed=i)
    mine = [f"c{i % 2}/v{i}" for i in range(8) if shard_of(f"c{i % 2}/v{i}", 2) == 1]
    assert len(mine) >= 2
    assert _vidnet("convert", src, dst, "--shard", "2/2", "--workers", "1", "-q").returncode == 0
    proc = subprocess.Popen(_shard_cmd(src, dst, "1/2"), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(dst.rglob(f".frames.db.*.{proc.pid}.*.tmp")):
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # SLURM's preemption or a node failure: no handler runs
    proc.wait()
    assert any(dst.rglob(".frames.db.*.tmp")), "the kill should land while a store is being written"
    res = _vidnet("convert", dst, "--merge")
    assert res.returncode == 2 and "1/2 did not finish" in one_line_error(res.stderr)
    assert not (dst / "index.csv").exists()
    res = _vidnet("convert", src, dst, "--shard", "1/2", "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert not list(dst.rglob(".frames.db.*.tmp"))  # the killed run's temporary is gone
    assert _vidnet("convert", dst, "--merge").returncode == 0
    rows = read_index(dst / "index.csv")
    assert sorted(r.path for r in rows) == sorted(f"c{i % 2}/v{i}" for i in range(8))
    for row in rows:
        with FrameStore(dst / row.path) as store:
            assert len(store) == 40 and not store.verify()


def test_merge_refuses_missing_and_disagreeing_shards(sample, tmp_path, caplog, monkeypatch):
    dst = tmp_path / "dst"
    opts = {"workers": 1}
    res = _vidnet("convert", dst, "--merge")
    assert res.returncode == 2 and "no such folder" in one_line_error(res.stderr)
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(1, 3)))
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(3, 3)))
    res = _vidnet("convert", dst, "--merge")
    assert res.returncode == 2, res.stderr
    assert "1 of 3 shard(s) missing (2/3)" in one_line_error(res.stderr)
    assert not (dst / "index.csv").exists() and not (dst / "labels.json").exists()
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(2, 3), quality=75))
    with pytest.raises(UsageError, match=r"shard 2/3 was run with other options .*quality: 90 vs 75"):
        merge_shards(dst)
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(2, 3), overwrite=True))
    part = dst / "convert-summary.shard-3-of-3.json"
    data = json.loads(part.read_text())
    data["labels"] = {k: len(data["labels"]) - 1 - v for k, v in data["labels"].items()}  # other ids
    part.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="shard 3/3 has other label ids"):
        merge_shards(dst)
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(3, 3)))
    convert_dataset(sample, dst, ConvertOptions(**opts, shard=Shard(1, 2)))
    with pytest.raises(UsageError, match="parts of N=2 and N=3"):
        merge_shards(dst)
    (dst / "convert-summary.shard-1-of-2.json").unlink()
    foreign = dst / "move_up" / ".frames.db.othernode.4242.0a1b2c3d.tmp"  # a shard killed on another node
    foreign.write_bytes(b"half a store")
    monkeypatch.setattr(logging.getLogger("vidnet"), "propagate", True)  # setup_logging (a CLI test) turns it off
    with caplog.at_level("WARNING", logger="vidnet"):
        assert len(merge_shards(dst).rows) == 12
    assert foreign.exists() and "1 unfinished temporary file(s) of runs on other hosts (othernode)" in caplog.text


def test_shards_share_dst_but_exclude_a_plain_run_and_a_second_copy(sample, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    with dir_lock(dst, what="convert --shard 9/9", shared=True):  # a shard of this conversion is running
        convert_dataset(sample, dst, ConvertOptions(workers=1, shard=Shard(1, 2)))  # another shard runs alongside
        with pytest.raises(UsageError, match="in use by vidnet convert --shard"):
            convert_dataset(sample, dst, ConvertOptions(workers=1))
        with pytest.raises(UsageError, match="in use"):
            merge_shards(dst)
    with dir_lock(dst, what="convert --shard 2/2", name=".vidnet.shard-2-of-2.lock"):  # shard 2 runs elsewhere
        with pytest.raises(UsageError, match="in use by vidnet convert --shard 2/2"):
            convert_dataset(sample, dst, ConvertOptions(workers=1, shard=Shard(2, 2)))
    with dir_lock(dst, what="convert"):  # a plain run holds DST
        with pytest.raises(UsageError, match="in use"):
            convert_dataset(sample, dst, ConvertOptions(workers=1, shard=Shard(2, 2)))


def test_partition_is_stable_across_processes_and_bad_shards_are_usage_errors(tmp_path):
    keys = [f"label{i % 7}/video_{i:05d}" for i in range(400)]
    here = [shard_of(k, 8) for k in keys]
    code = ("import sys, json; from vidnet.data.shards import shard_of; "
            "print(json.dumps([shard_of(k, 8) for k in json.load(sys.stdin)]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's own hash() would differ here
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys[::-1]), capture_output=True,
                           text=True, env=env, check=True)
    assert json.loads(other.stdout)[::-1] == here
    assert set(here) == set(range(1, 9)) and max(here.count(k) for k in range(1, 9)) < 2 * 400 / 8
    for bad, reason in (("0/3", "1 <= K <= N"), ("4/3", "1 <= K <= N"), ("two", "must be K/N")):
        with pytest.raises(UsageError, match=reason):
            parse_shard(bad)
    res = _vidnet("convert", tmp_path, tmp_path / "d", "--shard", "0/4")
    assert res.returncode == 2 and "SLURM_ARRAY_TASK_ID+1" in one_line_error(res.stderr)


def test_start_up_clean_survives_a_folder_another_shard_removes(tmp_path, monkeypatch):
    from vidnet._io import remove_orphan_temporaries

    (tmp_path / "label" / "failed_video").mkdir(parents=True)  # a shard's failed video removes this folder
    real = os.scandir

    def vanishing(path):
        if Path(path).name == "failed_video":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", vanishing)
    assert remove_orphan_temporaries(tmp_path) == 0
