"""Runs that overlap, get killed, or fail part-way: one run per DST, temporaries of live processes kept,
nothing left behind for a failed video, no orphan worker writing into the terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from vidnet.data.index import read_index
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.testing import write_test_video

from .conftest import one_line_error, video_tree, vidnet


def _wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.01)


def test_second_convert_into_the_same_dst_is_refused_and_every_store_is_indexed(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(9):
        write_test_video(src / f"c{i % 3}" / f"v{i}.mp4", 60, height=160, width=224, seed=i)
    first = subprocess.Popen([sys.executable, "-m", "vidnet", "convert", src, dst, "--workers", "1", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: dst.exists() and any(dst.rglob(".frames.db.*.tmp")))
    first.send_signal(signal.SIGSTOP)  # hold the first run mid-way, whatever the machine's speed
    try:
        second = vidnet("convert", src, dst, "--workers", "1", "-q")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert " 0 failed" in out + err  # the second run deleted none of the first run's files
    assert second.returncode == 2, second.stderr
    line = one_line_error(second.stderr)
    assert str(dst) in line and f"pid {first.pid}" in line
    rows = read_index(dst / "index.csv")
    assert len(rows) == 9 == len(list(dst.rglob("frames.db")))


def test_wait_option_runs_after_the_holder(tmp_path):
    from vidnet._io import dir_lock

    src, dst = video_tree(tmp_path / "src", {"a": 2}), tmp_path / "dst"
    dst.mkdir()
    with dir_lock(dst, what="test"):
        proc = subprocess.Popen([sys.executable, "-m", "vidnet", "convert", src, dst, "--wait", "--workers", "1",
                                 "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert proc.poll() is None  # still waiting
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(read_index(dst / "index.csv")) == 2


def test_start_up_removes_only_temporaries_of_processes_that_are_gone(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 1}), tmp_path / "dst"
    host = socket.gethostname().split(".")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (dst / "a" / "x").mkdir(parents=True)
    live_tmp = dst / "a" / "x" / f".frames.db.{host}.{os.getpid()}.0a1b2c3d.tmp"
    dead_tmp = dst / "a" / "x" / f".frames.db.{host}.{dead.pid}.0a1b2c3d.tmp"
    live_tmp.write_bytes(b"a run that is still writing")
    dead_tmp.write_bytes(b"left by a killed run")
    convert_dataset(src, dst, ConvertOptions(workers=1))
    assert live_tmp.exists() and not dead_tmp.exists()


def test_failed_video_leaves_no_empty_folder(tmp_path):
    src, dst = video_tree(tmp_path / "src", {"a": 1}), tmp_path / "dst"
    (src / "a" / "broken.mp4").write_bytes(b"not a video at all")
    (src / "b").mkdir()
    (src / "b" / "alone.mp4").write_bytes(b"")
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (1, 2)
    assert not (dst / "a" / "broken").exists() and not (dst / "b").exists()


@pytest.mark.slow
def test_killed_parent_leaves_no_worker_printing_broken_pipe(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(6):
        write_test_video(src / "c" / f"v{i}.mp4", 90, height=240, width=320, seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "vidnet", "convert", src, dst, "--workers", "2", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: dst.exists() and len(list(dst.rglob(".frames.db.*.tmp"))) >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The workers hold the same stderr: it reaches its end when the last of them is gone.
    err = proc.stderr.read()
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
