"""tools/gpu_check.py --dry-run: the one-call GPU check runs end to end on the CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--dry-run", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in ("== environment", "== dataset", "== training steps", "== data loading", "== JPEG decode",
                 "== tests marked cuda", "no figure here is a GPU figure"):
        assert text in proc.stdout, text
    data = json.loads(out.read_text())
    runs = [r for r in data["training"] if "error" not in r]
    # Every precision and memory format eager, and every precision compiled, ran and gave a finite loss.
    assert {(r["precision"], r["channels_last"]) for r in runs if not r["compiled"]} == {
        (p, c) for p in ("fp32", "bf16", "fp16") for c in (False, True)}
    assert {r["precision"] for r in runs if r["compiled"]} == {"fp32", "bf16", "fp16"}
    assert all(r["finite"] and r["clips_per_s"] > 0 for r in runs)
    assert [row["workers"] for row in data["loading"]] == [0, 1, 2]
    assert data["jpeg"]["cpu_1_workers_fps"] > 0 and data["cuda_tests"]["returncode"] in (0, 5)


def _gpu_check():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


def test_stopwatch_times_the_block_and_drains_the_gpu_queue_at_both_ends(monkeypatch):
    # Every figure of the check is timed by this one helper: a CUDA block is only over when its queue is.
    import time

    import torch

    gpu_check = _gpu_check()
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    with gpu_check.Stopwatch(cuda=True) as sw:
        events.append("work")
        time.sleep(0.05)
    assert events == ["sync", "work", "sync"]
    assert 0.05 <= sw.seconds < 5
    events.clear()
    with gpu_check.Stopwatch() as cpu:
        events.append("work")
    assert events == ["work"] and 0 <= cpu.seconds < sw.seconds


def test_gpu_check_installs_missing_packages_from_wheels_only(tmp_path, monkeypatch):
    # Without the network: pip gets --no-index --find-links DIR --no-deps and the folder's distributions that
    # are not installed, nothing else.
    gpu_check = _gpu_check()
    calls = []
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None if name == "coloredlogs" else 1)
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda cmd, check: calls.append(cmd))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("coloredlogs-15.0.1-py2.py3-none-any.whl", "humanfriendly-10.0-py2.py3-none-any.whl",
                 "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"):
        (wheels / name).write_bytes(b"")
    monkeypatch.setattr(gpu_check, "_installed", lambda dist: dist == "numpy")
    gpu_check.ensure_packages(wheels, dry_run=True)  # the dry run only reports
    assert calls == []
    assert gpu_check.ensure_packages(wheels, dry_run=False)["coloredlogs"] != "missing"
    assert calls == [[sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps",
                      "coloredlogs", "humanfriendly"]]
    with pytest.raises(SystemExit, match="no such folder of wheel files"):
        gpu_check.ensure_packages(tmp_path / "nowhere", dry_run=False)
    (wheels / "coloredlogs-15.0.1-py2.py3-none-any.whl").unlink()
    with pytest.raises(SystemExit, match="no wheel file for coloredlogs"):
        gpu_check.ensure_packages(wheels, dry_run=False)
