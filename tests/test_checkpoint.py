"""Checkpoints are data, never code: hostile pickles through every command that reads one, the format's
round trip under ``weights_only=True``, the one-time upgrade of the first format, ``vidnet checkpoint info``,
and what a run keeps on disk."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidnet import checkpoint as ckpt_io
from vidnet.cli import app

TINY = ["--clip-length", "4", "--clip-size", "16", "--batch-size", "2", "--workers", "0", "--no-tensorboard",
        "--train-frame-interval", "1", "--val-frame-interval", "1", "--end-epoch", "1"]


class _Payload:
    """Unpickling this runs a shell command (what an attacker's checkpoint does under weights_only=False)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _hostile(kind: str, path: Path, marker: Path) -> Path:
    command = f"touch {marker}"
    if kind == "zip":  # what torch.save writes
        torch.save({"model": {"w": torch.zeros(1)}, "hook": _Payload(command)}, path)
    elif kind == "raw":  # a legacy (non-zip) pickle stream, also accepted by torch.load
        with open(path, "wb") as f:
            pickle.dump({"state_dict": _Payload(command)}, f, protocol=2)
    else:  # plain ASCII text: protocol-0 pickle opcodes
        path.write_text(f"cposix\nsystem\n(S'{command}'\ntR.")
    return path


def _commands(evil: Path, tiny_dataset: Path, tmp: Path) -> dict[str, list[str]]:
    store = next(tiny_dataset.glob("*/*/frames.db"))
    train = ["train", "-n", "tiny_3d", "--dataset", str(tiny_dataset), "--model-dir", str(tmp / "runs"), *TINY]
    return {
        "test": ["test", "-c", str(evil), "-d", str(tiny_dataset)],
        "predict": ["predict", str(store), "-c", str(evil)],
        "train --resume PATH": [*train, "--resume", str(evil)],
        "train --resume auto": [*train, "--resume", "auto"],
        "train --pretrained-3d": [*train, "--pretrained-3d", str(evil)],
        "train --teacher": [*train, "--teacher", str(evil)],
        "compress": ["compress", "--checkpoint", str(evil), "--clip", "4x16x16", "--ratios", "", "--sparsity", "",
                     "--quantize", "", "--repeats", "1"],
        "export": ["export", "--checkpoint", str(evil), "-o", str(tmp / "x.pt"), "--format", "torchscript",
                   "--clip", "4x16x16"],
        "checkpoint info": ["checkpoint", "info", str(evil)],
        "checkpoint upgrade --trust": ["checkpoint", "upgrade", str(evil), "--trust"],
    }


@pytest.mark.parametrize("kind", ["zip", "raw", "text"])
def test_hostile_pickles_run_nothing_in_any_command(kind, tiny_dataset, tmp_path):
    marker = tmp_path / "pwned"
    evil = _hostile(kind, tmp_path / "evil.pth", marker)
    commands = _commands(evil, tiny_dataset, tmp_path)
    for name, args in commands.items():
        if name == "train --resume auto":  # planted in the run folder, where --resume auto looks
            planted = tmp_path / "runs" / tiny_dataset.name / "tiny_3d" / "checkpoints" / "ep-0009.pth"
            planted.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(evil, planted)
            where = planted
        else:
            where = evil
        r = CliRunner().invoke(app, args)
        assert not marker.exists(), f"{name}: the pickle ran its command"
        errors = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert r.exit_code == 1, f"{name}: exit {r.exit_code}\n{r.output}"
        assert len(errors) == 1 and str(where) in errors[0] and "refused" in errors[0], f"{name}: {r.output}"
        assert "Traceback" not in r.output, name


def test_hostile_pickle_gives_one_line_on_stderr_in_a_real_process(tiny_dataset, tmp_path):
    marker = tmp_path / "pwned"
    evil = _hostile("zip", tmp_path / "evil.pth", marker)
    p = subprocess.run([sys.executable, "-m", "vidnet", "test", "-c", str(evil), "-d", str(tiny_dataset)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and not marker.exists()
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {evil}: refused: loading it would call posix.system")


def test_training_checkpoint_round_trips_with_weights_only(tiny_checkpoint):
    obj = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)  # no allowlist, no numpy
    assert obj["format"] == ckpt_io.FORMAT and obj["kind"] == "train"
    assert {"model", "optimizer", "rng", "config", "labels", "preprocessing", "epoch", "step"} <= set(obj)
    assert obj["preprocessing"]["family"] == "ucf101" and obj["preprocessing"]["hflip"] is False  # the sample's
    # The RNG states restore exactly.
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    state = ckpt_io.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt_io.set_rng_state(obj["rng"])
    ckpt_io.set_rng_state(torch.load(_saved(state, tiny_checkpoint.parent.parent), weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _saved(state, folder: Path) -> Path:
    return ckpt_io.save_training(folder / "rng-only.pth", {"rng": state})


def test_writer_refuses_what_the_safe_reader_could_not_read(tmp_path):
    with pytest.raises(ckpt_io.CheckpointError, match="ndarray"):
        ckpt_io.save_training(tmp_path / "x.pth", {"sums": np.zeros(3)})
    assert not list(tmp_path.iterdir())  # nothing half-written


def _format_one(tiny_checkpoint: Path, path: Path) -> Path:
    """A checkpoint as vidnet wrote it before this format: NumPy RNG state and sums, format vidnet-train-1."""
    new = torch.load(tiny_checkpoint, weights_only=True)
    random.seed(11), np.random.seed(12), torch.manual_seed(13)
    old = {k: v for k, v in new.items() if k not in ("format", "kind")}
    old.update(format="vidnet-train-1", epoch_sums=[np.float64(1.5), np.float64(2.0), np.float64(1.0),
                                                       np.float64(4.0)],
               rng={"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    torch.save(old, path)
    return path


def test_format_one_needs_an_explicit_upgrade(tiny_checkpoint, tiny_dataset, tmp_path):
    legacy = _format_one(tiny_checkpoint, tmp_path / "old.pth")
    r = CliRunner().invoke(app, ["test", "-c", str(legacy), "-d", str(tiny_dataset)])
    assert r.exit_code == 1 and f"vidnet checkpoint upgrade {legacy} --trust" in r.output
    r = CliRunner().invoke(app, ["checkpoint", "upgrade", str(legacy)])
    assert r.exit_code == 2 and "--trust" in r.output
    r = CliRunner().invoke(app, ["checkpoint", "upgrade", str(legacy), "--trust"])
    assert r.exit_code == 0, r.output
    new = torch.load(legacy, weights_only=True)
    assert new["format"] == ckpt_io.FORMAT and new["epoch_sums"] == [1.5, 2.0, 1.0, 4.0]
    ckpt_io.set_rng_state(new["rng"])
    got = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(11), np.random.seed(12), torch.manual_seed(13)
    assert got == (random.random(), np.random.rand(), torch.rand(1).item())
    r = CliRunner().invoke(app, ["test", "-c", str(legacy), "-d", str(tiny_dataset), "--clips", "1", "--crops", "1",
                                 "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["checkpoint", "upgrade", str(legacy), "--trust"])
    assert r.exit_code == 1 and "already in format" in r.output


def test_checkpoint_info(tiny_checkpoint):
    r = CliRunner().invoke(app, ["checkpoint", "info", str(tiny_checkpoint)])
    assert r.exit_code == 0, r.output
    assert "network        tiny_3d" in r.output and "labels         2: move_left, move_right" in r.output
    assert "4 frames at 16x16" in r.output and "family ucf101" in r.output and "optimizer" in r.output
    info = json.loads(CliRunner().invoke(app, ["checkpoint", "info", str(tiny_checkpoint), "--json"]).output)
    assert info["kind"] == "train" and info["epoch"] == 1 and info["entries"]["model"]["tensors"] > 0


def test_keep_last_and_a_weights_only_best(tiny_dataset, tmp_path):
    args = ["train", "-n", "tiny_3d", "--dataset", str(tiny_dataset), "--model-dir", str(tmp_path), *TINY[:-2],
            "--end-epoch", "4", "--lr-base", "0.01", "--optimizer", "adamw"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    folder = tmp_path / tiny_dataset.name / "tiny_3d" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pth", "ep-0003.pth", "ep-0004.pth"]  # default 2
    best = torch.load(folder / "best.pth", weights_only=True)
    assert best["kind"] == "model" and "optimizer" not in best and "rng" not in best
    assert (folder / "best.pth").stat().st_size < 0.6 * (folder / "ep-0004.pth").stat().st_size  # AdamW: 2 moments
    r = CliRunner().invoke(app, [*args[:-4], "--end-epoch", "5", "--resume", str(folder / "best.pth")])
    assert r.exit_code == 1 and "holds weights only" in r.output
    shutil.rmtree(tmp_path / tiny_dataset.name)
    r = CliRunner().invoke(app, [*args, "--keep-last", "0"])
    assert r.exit_code == 0 and len(list(folder.glob("ep-*.pth"))) == 4


def _edited(tiny_checkpoint: Path, path: Path, **changes) -> Path:
    obj = torch.load(tiny_checkpoint, weights_only=True)
    obj.update(changes)
    for key in [k for k, v in changes.items() if v is _DROP]:
        del obj[key]
    torch.save(obj, path)
    return path


_DROP = object()


def _cycle():
    d = {}
    d["state_dict"] = d
    return d


def _shared_deep():
    x = [torch.zeros(1)]
    for _ in range(60):  # 2^60 paths through 61 lists
        x = [x, x]
    return x


@pytest.mark.parametrize(("name", "make", "command"), [
    ("self-containing wrapper", lambda ck, p: (torch.save(_cycle(), p), p)[1], "test"),
    ("list that holds itself", lambda ck, p: _edited(ck, p, extra=(lst := [], lst.append(lst))[0]), "info"),
    ("shared nesting 2^60 paths", lambda ck, p: _edited(ck, p, extra=_shared_deep()), "info"),
    ("labels of wrong type", lambda ck, p: _edited(ck, p, labels={"a": 0, "b": "x"}), "test"),
    ("id -> name labels", lambda ck, p: _edited(ck, p, labels={0: "move_left", 1: "move_right"}), "predict"),
    ("duplicate label ids", lambda ck, p: _edited(ck, p, labels={"move_left": 0, "move_right": 0}), "test"),
    ("preprocessing a string", lambda ck, p: _edited(ck, p, preprocessing="abc"), "predict"),
    ("clip 30000 px a side", lambda ck, p: _edited(ck, p, preprocessing={"clip_size": [30000, 30000]}), "test"),
    ("zero std", lambda ck, p: _edited(ck, p, preprocessing={"std": [0, 0, 0]}), "predict"),
    ("no rng", lambda ck, p: _edited(ck, p, rng=_DROP), "resume"),
    ("empty optimizer", lambda ck, p: _edited(ck, p, optimizer={}), "resume"),
    ("epoch not a number", lambda ck, p: _edited(ck, p, epoch="abc"), "resume"),
])
def test_malformed_checkpoints_are_one_line_errors(name, make, command, tiny_checkpoint, tiny_dataset, tmp_path):
    bad = make(tiny_checkpoint, tmp_path / "bad.pth")
    store = next(tiny_dataset.glob("*/*/frames.db"))
    args = {"test": ["test", "-c", str(bad), "-d", str(tiny_dataset)],
            "predict": ["predict", str(store), "-c", str(bad)],
            "info": ["checkpoint", "info", str(bad)],
            "resume": ["train", "-n", "tiny_3d", "--dataset", str(tiny_dataset), "--model-dir", str(tmp_path / "r"),
                       *TINY, "--resume", str(bad)]}[command]
    r = CliRunner().invoke(app, args)
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1 and str(bad) in errors[0], f"{name}: {r.output[-2000:]}"
    assert "Traceback" not in r.output, name


def test_refusals_say_what_the_file_is(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b'{"weights": [1, 2, 3]}')
    with pytest.raises(ckpt_io.CheckpointError, match="not a torch checkpoint file") as err:
        ckpt_io.read_file(garbage)
    assert "weights_only" not in str(err.value) and "trusted source" not in str(err.value)
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as f:
        pickle.dump({"w": torch.zeros(2)}, f, protocol=2)
    with pytest.raises(ckpt_io.CheckpointError, match="pickle.dump rather than torch.save"):
        ckpt_io.read_file(raw)


def test_keep_last_never_drops_the_checkpoint_just_written(tiny_dataset, tmp_path):
    # Formerly a run resumed from epoch 1 kept the two furthest files (ep-0003, ep-0004 of the abandoned
    # first run), deleted the one it had just written, and --resume auto then continued the abandoned run.
    base = ["train", "-n", "tiny_3d", "--dataset", str(tiny_dataset), "--model-dir", str(tmp_path), *TINY[:-2]]
    assert CliRunner().invoke(app, [*base, "--end-epoch", "4", "--keep-last", "0"]).exit_code == 0
    r = CliRunner().invoke(app, [*base, "--end-epoch", "4", "--resume-epoch", "1", "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    folder = tmp_path / tiny_dataset.name / "tiny_3d" / "checkpoints"
    names = sorted(p.name for p in folder.glob("ep-*.pth"))
    assert names == ["ep-0001-it-000001.pth", "ep-0001.pth"], names
    assert ckpt_io.latest_checkpoint(folder).name == "ep-0001-it-000001.pth"


def test_upgrade_refuses_with_one_line_what_it_cannot_write(tiny_checkpoint, tmp_path):
    legacy = _format_one(tiny_checkpoint, tmp_path / "old.pth")
    obj = torch.load(legacy, weights_only=False)  # the test's own file
    obj["flags"] = np.dtype("float64")  # admitted by the NumPy allowlist, but no plain value
    torch.save(obj, legacy)
    r = CliRunner().invoke(app, ["checkpoint", "upgrade", str(legacy), "--trust", "--out", str(tmp_path / "new.pth")])
    assert r.exit_code == 1 and "Traceback" not in r.output and "cannot be read back" in r.output
    assert not (tmp_path / "new.pth").exists()


def test_a_run_at_zero_accuracy_still_saves_best_and_restores_the_thread_count(tiny_dataset, tmp_path, monkeypatch):
    """best.pth is the best validation so far, also when that is 0 % (it was never written then); training with
    loader workers lowers torch's thread count for its duration only."""
    import vidnet.train.loop as loop

    monkeypatch.setattr(loop, "_validate", lambda run, epoch: {"loss": 1.0, "top1": 0.0, "top5": 0.0})
    threads = torch.get_num_threads()
    r = CliRunner().invoke(app, ["train", "-n", "tiny_3d", "--dataset", str(tiny_dataset), "--model-dir",
                                 str(tmp_path), *TINY[:-2], "--end-epoch", "1", "--workers", "1"])
    assert r.exit_code == 0 and "(best 0.00%)" in r.output, r.output
    assert (tmp_path / tiny_dataset.name / "tiny_3d" / "checkpoints" / "best.pth").is_file()
    assert torch.get_num_threads() == threads
