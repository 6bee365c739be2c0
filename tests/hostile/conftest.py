"""Helpers of the hostile-input suite: tiny sources, a decompression-bomb JPEG, the command line in a
subprocess (optionally under a memory limit), and file systems that are read-only or full."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.store import encode_jpeg
from vidnet.testing import write_test_video


def vidnet(*args: str | os.PathLike, memory_gib: float | None = None, **kw) -> subprocess.CompletedProcess:
    """``python -m vidnet ARGS`` in a subprocess (``memory_gib``: its address space is capped with
    ``RLIMIT_AS``, so an allocation the size of a decompression bomb fails instead of swapping)."""

    def cap() -> None:
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-m", "vidnet", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=cap if memory_gib else None, timeout=300, **kw)


def invoke(*args: str | os.PathLike):
    """The command line in this process (Typer's runner; ``output`` holds stdout and stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(text: str) -> str:
    """The single ``error: ...`` line of ``text``; fails on a traceback or on several error lines."""
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def bomb_jpeg(side: int = 60000) -> bytes:
    """A 631-byte JPEG whose header claims ``side`` x ``side`` pixels (10 GiB decoded at 60000)."""
    data = bytearray(encode_jpeg(np.full((16, 16, 3), 100, np.uint8)))
    i = data.index(b"\xff\xc0")  # baseline start-of-frame: length(2) precision(1) height(2) width(2)
    data[i + 5 : i + 7] = side.to_bytes(2, "big")
    data[i + 7 : i + 9] = side.to_bytes(2, "big")
    return bytes(data)


def video_tree(root: Path, layout: dict[str, int], frames: int = 4) -> Path:
    """``root/<label>/<label><i>.mp4``: ``layout`` maps a label to its number of (tiny) videos."""
    for label, n in layout.items():
        for i in range(n):
            write_test_video(root / label / f"{label}{i}.mp4", frames, height=32, width=32, seed=i)
    return root


def _mount(target: Path, options: str) -> bool:
    """Mount a tmpfs on ``target`` (root with mount rights only); whether it worked."""
    if os.geteuid() != 0:
        return False
    target.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return res.returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder the process cannot write into: a read-only tmpfs when root may mount one, else (not root)
    a folder without write permission. Skips where neither works (root without mount rights)."""
    target = tmp_path / "ro"
    if _mount(target, "ro,size=1m"):
        yield target
        subprocess.run(["umount", str(target)], check=False)
    elif os.geteuid() != 0:
        target.mkdir()
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
    else:
        pytest.skip("root without the right to mount: no way to make a read-only folder")


@pytest.fixture
def full_dir(tmp_path):
    """A folder on a file system of 512 KiB (a tmpfs), or None where mounting is not allowed."""
    target = tmp_path / "small"
    if _mount(target, "size=512k"):
        yield target
        with contextlib.suppress(Exception):
            subprocess.run(["umount", str(target)], check=False)
    else:
        yield None
