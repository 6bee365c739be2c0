"""``vidnet slurm convert|train --cluster local``: the shards run as submitit jobs on this machine, then merge
into the dataset a single conversion writes; a training job is signalled, requeued and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidnet.checkpoint import load_training
from vidnet.cli import app
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.data.sample import SampleOptions, make_sample_dataset


@pytest.mark.slow
def test_slurm_convert_local_two_shards_equal_single_run(tmp_path):
    pytest.importorskip("submitit")
    src, single, sharded = tmp_path / "videos", tmp_path / "single", tmp_path / "sharded"
    make_sample_dataset(src, SampleOptions(classes=2, videos_per_class=3, min_frames=8, max_frames=12, width=64,
                                           height=48, workers=1))
    convert_dataset(src, single, ConvertOptions(workers=1, short_side=32))
    res = subprocess.run([sys.executable, "-m", "vidnet", "slurm", "convert", src, sharded, "--shards", "2",
                          "--cluster", "local", "--cpus-per-task", "1", "--short-side", "32", "--logs",
                          tmp_path / "logs"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "merged 2 shards" in res.stdout + res.stderr
    assert (sharded / "convert-summary.shard-2-of-2.json").is_file()
    for name in ("index.csv", "labels.json", "convert-errors.csv"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    stores = {p.relative_to(single): p.read_bytes() for p in single.rglob("frames.db")}
    assert len(stores) == 6 and stores == {p.relative_to(sharded): p.read_bytes() for p in sharded.rglob("frames.db")}


def test_without_submitit_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    res = CliRunner().invoke(app, ["slurm", "convert", str(tmp_path), str(tmp_path / "d"), "--cluster", "local"])
    assert res.exit_code == 1 and "pip install 'vidnet[slurm]'" in res.output and "Traceback" not in res.output


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (Linux)."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def _submitit_tasks(root: int) -> list[int]:
    """The submitit task processes below ``root`` (not its controller, not the training process)."""
    children, todo, found = _children(), [root], []
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "submitit.core._submit" in cmd:
            found.append(pid)
    return found


TINY = ["--network", "tiny_3d", "--clip-length", "4", "--clip-size", "16", "--batch-size", "2", "--workers", "0",
        "--no-tensorboard", "--train-frame-interval", "1", "--val-frame-interval", "1", "--end-epoch", "40"]


@pytest.mark.slow
def test_slurm_train_local_requeued_after_the_signal_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    """The job gets submitit's time-limit signal mid-run: the training stops at a step with a checkpoint, the job is
    requeued (``checkpoint()``) and resumes with ``--resume auto``; its weights equal an uninterrupted run's."""
    pytest.importorskip("submitit")
    args = [*TINY, "--dataset", str(tiny_dataset)]
    # The uninterrupted run in a process of its own too, so both compute with a fresh process's thread count.
    plain = subprocess.run([sys.executable, "-m", "vidnet", "train", *args, "--model-dir", str(tmp_path / "plain")],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    proc = subprocess.Popen([sys.executable, "-m", "vidnet", "slurm", "train", "--cluster", "local", "--gpus-per-node",
                             "0", "--cpus-per-task", "1", "--logs", str(tmp_path / "logs"), "--", *args,
                             "--model-dir", str(tmp_path / "slurm")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        run = tmp_path / "slurm" / tiny_dataset.name / "tiny_3d"
        deadline = time.monotonic() + 180
        while not list((run / "checkpoints").glob("ep-*.pth")):  # training is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.02)
        tasks = _submitit_tasks(proc.pid)
        assert len(tasks) == 1
        os.kill(tasks[0], signal.SIGUSR2)  # what SLURM (--signal USR2@...) or the local controller sends
        time.sleep(0.05)
        os.kill(tasks[0], signal.SIGUSR2)  # again: the training must still get one SIGINT (two stop it at once)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "finished after 1 requeue(s)" in out and "Traceback" not in out, out
    log = (run / "train.log").read_text()
    assert log.count("interrupted: saving a checkpoint after this step") == 1 and "resumed from" in log, log
    jobs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*_log.out"))
    assert "attempt 1, rank 0 of 1" in jobs and "attempt 2, rank 0 of 1" in jobs, jobs
    errs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*_log.err"))
    assert "stopped (interrupted) after" in errs and "\ninterrupted\n" not in errs, errs  # stopped at a step, saved
    assert not list((tmp_path / "logs").rglob("%j"))  # no folder of submitit's unformatted pattern

    last = {name: load_training(tmp_path / name / tiny_dataset.name / "tiny_3d" / "checkpoints" / "ep-0040.pth")
            ["model"] for name in ("plain", "slurm")}
    assert last["plain"].keys() == last["slurm"].keys()
    for key, value in last["plain"].items():
        assert torch.equal(value, last["slurm"][key]), key


def test_slurm_train_checks_the_training_options_before_submitting(tiny_dataset, tmp_path):
    pytest.importorskip("submitit")
    cases = [([], "give the training options after --"),
             (["--", "--network", "tiny_3d", "--dataset", str(tiny_dataset), "--gpus", "2"], "--gpus is set by"),
             (["--", "--network", "tiny_3d", "--dataset", str(tiny_dataset), "--resume", "x.pth"], "--resume is set"),
             (["--", "--network", "tiny_3d", "--dataset", str(tiny_dataset), "--no-such"], "No such option: --no-such"),
             (["--", "--network", "tiny_3d", "--dataset", str(tmp_path / "nowhere")], "no such folder here"),
             (["--", "--network", "tiny_3d", "--dataset", str(tiny_dataset), "--nodes", "2"],
              "--nodes is an option of vidnet slurm train: put it before --"),
             (["--", "--network", "tiny_3d", "-h"], "see vidnet train --help")]
    earlier = tmp_path / "runs" / tiny_dataset.name / "tiny_3d" / "checkpoints"
    earlier.mkdir(parents=True)
    (earlier / "ep-0003.pth").write_bytes(b"")
    cases.append((["--gpus-per-node", "0", "--", "--network", "tiny_3d", "--dataset", str(tiny_dataset),
                   "--model-dir", str(tmp_path / "runs"), "--lr-base", "0.5"],
                  "holds an earlier run (ep-0003.pth); every attempt resumes its run folder, so add --resume auto"))
    for extra, message in cases:
        res = CliRunner().invoke(app, ["slurm", "train", "--cluster", "local", "--logs", str(tmp_path / "logs"),
                                       *extra])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (extra, res.output)
    assert not (tmp_path / "logs").exists()  # nothing was submitted


def test_slurm_train_refuses_before_submitting_what_every_attempt_would_fail_on(tiny_dataset, tmp_path, monkeypatch):
    """Options that only clash with the ones the job adds (--gpus, --resume auto), and a local job that cannot
    run here, are refused before anything is submitted or written."""
    pytest.importorskip("submitit")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    config = tmp_path / "run.yaml"
    config.write_text("network: tiny_3d\nresume_epoch: 1\n")
    cases = [(["--gpus-per-node", "0", "--", "--config", str(config), "--dataset", str(tiny_dataset)],
              "give --resume or --resume-epoch, not both"),
             (["--gpus-per-node", "0", "--nodes", "2", "--", *TINY, "--dataset", str(tiny_dataset)],
              "--cluster local runs on this one machine"),
             (["--", *TINY, "--dataset", str(tiny_dataset)], "--gpus-per-node 1: this machine has 0 CUDA device(s)"),
             (["--gpus-per-node", "0", "--", *TINY, "--dataset", str(tiny_dataset), "--network", "tiny_3e"],
              "--network: unknown model 'tiny_3e'")]
    for extra, message in cases:
        res = CliRunner().invoke(app, ["slurm", "train", "--cluster", "local", "--logs", str(tmp_path / "logs"),
                                       *extra])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (extra, res.output)
    assert not (tmp_path / "logs").exists()  # nothing was submitted


@pytest.mark.slow
def test_slurm_train_a_failed_training_is_one_line_naming_the_reason(tiny_dataset, tmp_path):
    pytest.importorskip("submitit")
    import shutil

    data = tmp_path / "frames"
    shutil.copytree(tiny_dataset, data)
    store = sorted(data.rglob("frames.db"))[0]
    store.write_bytes(store.read_bytes()[:100] + b"\x55" * 4000)  # a damaged store
    res = subprocess.run([sys.executable, "-m", "vidnet", "slurm", "train", "--cluster", "local", "--gpus-per-node",
                          "0", "--cpus-per-task", "1", "--logs", str(tmp_path / "logs"), "--", *TINY, "--dataset",
                          str(data), "--model-dir", str(tmp_path / "runs"), "--end-epoch", "1"],
                         capture_output=True, text=True, timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert len(errors) == 1 and "failed:" in errors[0] and str(store.parent.name) in errors[0], res.stderr


@pytest.mark.slow
def test_slurm_train_two_processes_finish_and_report_done(tiny_dataset, tmp_path, monkeypatch):
    """A job of two tasks (as --gpus-per-node 2 makes; here two CPU processes over gloo) reports its end as done,
    also when the launching shell has MASTER_PORT set (a job started from inside another job)."""
    pytest.importorskip("submitit")
    import socket

    from vidnet.cli import slurm

    real = slurm._executor

    def two_tasks(*args, **kwargs):
        executor = real(*args, **kwargs)
        update = executor.update_parameters

        def update_two(**params):
            update(**{**params, "tasks_per_node": 2} if "tasks_per_node" in params else params)

        executor.update_parameters = update_two
        return executor

    monkeypatch.setattr(slurm, "_executor", two_tasks)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(s.getsockname()[1]))
    res = CliRunner().invoke(app, ["slurm", "train", "--cluster", "local", "--gpus-per-node", "0", "--cpus-per-task",
                                   "1", "--logs", str(tmp_path / "logs"), "--", *TINY, "--dataset", str(tiny_dataset),
                                   "--model-dir", str(tmp_path / "runs"), "--end-epoch", "1"])
    assert res.exit_code == 0 and "done: training job" in res.output, res.output
    log = (tmp_path / "runs" / tiny_dataset.name / "tiny_3d" / "train.log").read_text()
    assert "2 process(es)" in log, log


@pytest.mark.slow
def test_slurm_train_sigterm_stops_the_training_once_with_a_checkpoint_and_leaves_no_process(tiny_dataset, tmp_path):
    """scancel and a preemption send SIGTERM: the task turns it into one SIGINT for its training, which saves a
    resumable checkpoint; the command says so, and no training process outlives its task."""
    pytest.importorskip("submitit")
    proc = subprocess.Popen([sys.executable, "-m", "vidnet", "slurm", "train", "--cluster", "local", "--gpus-per-node",
                             "0", "--cpus-per-task", "1", "--logs", str(tmp_path / "logs"), "--", *TINY, "--dataset",
                             str(tiny_dataset), "--model-dir", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        run = tmp_path / "runs" / tiny_dataset.name / "tiny_3d"
        deadline = time.monotonic() + 180
        while not list((run / "checkpoints").glob("ep-*.pth")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.02)
        tasks = _submitit_tasks(proc.pid)
        below = [pid for pid in _children().get(tasks[0], [])]
        assert len(tasks) == 1 and below
        os.kill(tasks[0], signal.SIGTERM)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "was stopped by SIGTERM with a resumable checkpoint" in out, out
    assert "interrupted: saving a checkpoint after this step" in (run / "train.log").read_text()
    assert not list((run / "checkpoints").glob("ep-0040*.pth"))  # it did stop early
    assert all(not Path(f"/proc/{pid}").exists() for pid in below)
