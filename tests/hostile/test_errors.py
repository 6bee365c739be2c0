"""One error boundary: a full or read-only disk, a file where a folder should be, a broken HDF5 file or a
config that is not UTF-8 give ``error: <file>: <plain reason>`` and exit 1 (2 for usage), never a traceback
(except under --debug)."""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from vidnet._io import atomic_path
from vidnet.data.ingest import ConvertOptions, convert_dataset

from .conftest import invoke, one_line_error, video_tree, vidnet


def test_read_only_dst(tmp_path, readonly_dir):
    src = video_tree(tmp_path / "src", {"a": 1})
    res = vidnet("convert", src, readonly_dir / "dst", "--workers", "1")
    assert res.returncode == 1
    line = one_line_error(res.stderr)
    assert line.startswith(f"error: {readonly_dir / 'dst'}: ") and ("read-only" in line or "permission" in line)


def test_dst_that_is_a_regular_file(tmp_path):
    src = video_tree(tmp_path / "src", {"a": 1})
    (tmp_path / "dst").write_text("not a folder")
    res = vidnet("convert", src, tmp_path / "dst", "--workers", "1")
    assert res.returncode == 2
    assert one_line_error(res.stderr) == f"error: {tmp_path / 'dst'}: exists and is not a folder"


def _fill(folder: pathlib.Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_disk_full_while_writing_index_csv(tmp_path, full_dir, monkeypatch):
    src = video_tree(tmp_path / "src", {"a": 2})
    dst = (full_dir or tmp_path) / "dst"
    convert_dataset(src, dst, ConvertOptions(workers=1))
    (dst / "index.csv").unlink()
    if full_dir is not None:  # a real file system of 512 KiB, filled up
        _fill(full_dir)
    else:  # no right to mount one here: the write fails as it would
        real = pathlib.Path.write_text

        def full(self, *a, **k):
            if ".index.csv." in self.name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, "write_text", full)
    res = invoke("convert", src, dst, "--workers", "1", "-q")
    assert res.exit_code == 1, res.output
    assert one_line_error(res.output) == f"error: {dst / 'index.csv'}: disk full (no space left on device)"
    assert sorted(p.name for p in dst.iterdir() if p.name.startswith(".index")) == []  # no temporary left


def test_disk_full_while_writing_a_store_is_a_plain_reason(tmp_path, full_dir):
    if full_dir is None:
        pytest.skip("needs a small file system (root with the right to mount a tmpfs)")
    src = tmp_path / "src"
    from vidnet.testing import write_test_video

    write_test_video(src / "a" / "big.mp4", 40, height=240, width=320)
    dst = full_dir / "dst"
    dst.mkdir()
    with open(full_dir / "filler", "wb") as f:  # leave ~96 KiB: the index fits, the store does not
        f.write(b"\0" * (512 - 96) * 1024)
    s = convert_dataset(src, dst, ConvertOptions(workers=1, quality=100))
    (_, _, reason), = [p for p in s.problems if p[1] == "error"]
    assert reason == f"{dst / 'a' / 'big' / 'frames.db'}: cannot write (disk full)", reason
    assert not list(dst.rglob(".frames.db.*"))


@pytest.mark.slow
def test_model_dir_on_a_read_only_file_system(tiny_dataset, readonly_dir):
    res = vidnet("train", "--network", "tiny_3d", "--dataset", tiny_dataset, "--model-dir", readonly_dir / "runs",
                 "--end-epoch", "1", "--gpus", "0", "--clip-length", "4", "--clip-size", "32", "--batch-size", "2")
    assert res.returncode == 1, res.stderr[-3000:]
    line = one_line_error(res.stderr)
    assert line.startswith(f"error: {readonly_dir / 'runs'}") and ("read-only" in line or "permission" in line)


def test_sample_into_an_impossible_path():
    res = vidnet("sample", "/dev/null/x", "--classes", "2", "--videos-per-class", "1", "--workers", "1")
    assert res.returncode == 1
    assert one_line_error(res.stderr) == "error: /dev/null/x: a file stands where a folder is needed"


@pytest.mark.slow
def test_report_with_a_config_that_is_not_utf8(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.csv").write_text("epoch,loss,top1\n0,1.0,0.5\n")
    (run / "config.yaml").write_bytes(b"network: r\xe9seau\n")  # Latin-1
    res = vidnet("report", run)
    assert res.returncode == 1
    assert one_line_error(res.stderr) == f"error: {run / 'config.yaml'}: not UTF-8 text (byte 10)"


def test_hdf5_with_a_group_named_video_is_a_plain_reason(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    with h5py.File(src / "a" / "v1.h5", "w") as f:
        f.create_group("video")
    with h5py.File(src / "a" / "v2.h5", "w") as f:
        f["video"] = np.zeros((2, 16, 16, 3), np.uint8)
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    (_, _, reason), = [p for p in s.problems if p[1] == "error"]
    assert reason == "'video' is a group, not a [T, H, W, 3] uint8 dataset"


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "dst").write_text("not a folder")
    src = video_tree(tmp_path / "src", {"a": 1})
    res = vidnet("--debug", "convert", src, tmp_path / "dst")
    assert res.returncode != 0 and "Traceback (most recent call last)" in res.stderr


def test_kill_during_a_checkpoint_save_leaves_a_temporary_that_start_up_removes(tmp_path):
    from vidnet._io import remove_orphan_temporaries

    run = tmp_path / "run"
    run.mkdir()
    code = (f"import time; from vidnet._io import atomic_path\n"
            f"with atomic_path({str(run / 'checkpoints' / 'last.pth')!r}) as tmp, open(tmp, 'wb') as f:\n"
            f"    f.write(b'x' * 1000); f.flush(); print('writing', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    (left,) = (run / "checkpoints").glob(".last.pth.*.tmp")
    assert f".{child.pid}." in left.name  # the name says whose it is
    with atomic_path(run / "checkpoints" / "best.pth") as mine:  # a live writer's temporary
        mine.write_bytes(b"y")
        assert remove_orphan_temporaries(run) == 0  # the child still lives: nothing is removed
        child.kill()
        child.wait()
        time.sleep(0.1)
        assert remove_orphan_temporaries(run) == 1
        assert not left.exists() and mine.exists()
    assert not (run / "checkpoints" / "last.pth").exists() and (run / "checkpoints" / "best.pth").exists()
