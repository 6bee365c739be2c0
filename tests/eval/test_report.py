"""Report files: the 101-class heatmap, predictions.jsonl against the .npz, and ``vidnet report`` on a run folder."""

from __future__ import annotations

import builtins
import json
import struct

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.eval.metrics import summarize
from vidnet.eval.multiview import Predictions
from vidnet.eval.report import write_heatmap, write_report
from vidnet.train.hooks import CSVSink


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make ``import matplotlib`` fail as it does where the ``plot`` extra is not installed."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_heatmap_renders_101_classes(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    names = [f"Class{i:03d}" + "x" * (i % 12) for i in range(101)]
    cm = rng.integers(0, 3, (101, 101)) + 20 * np.eye(101, dtype=np.int64)
    w, h = png_size(write_heatmap(cm, names, tmp_path / "cm.png", title="101 classes"))
    # 0.14 inch per class at 150 dpi is 21 px per cell: every class keeps a readable row and column.
    assert 101 * 21 <= min(w, h) and max(w, h) < 4000
    w4, h4 = png_size(write_heatmap(cm[:4, :4], names[:4], tmp_path / "cm4.png"))
    assert w4 < w / 3 and h4 < h / 3  # the figure scales with the number of classes


def _preds(n=5, views=3, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    return Predictions(keys=[f"v{i}" for i in range(n)], labels=rng.integers(0, classes, n),
                       class_names=[f"c{i}" for i in range(classes)],
                       logits=rng.normal(size=(n, views, classes)).astype(np.float32), model="m")


def test_predictions_jsonl_round_trip_with_npz(tmp_path):
    p = _preds()
    write_report(tmp_path, {"video": (p, summarize(p.log_probs(), p.labels, ks=(1, 3)))}, k=3,
                 titles={"video": "video accuracy"})
    back = Predictions.load(tmp_path / "video_logits.npz")
    lp = back.log_probs()
    rows = [json.loads(line) for line in (tmp_path / "video_predictions.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == back.keys and [r["video_id"] for r in rows] == back.video_ids
    assert all(r["time_start"] is None and r["time_end"] is None for r in rows)
    assert [r["label"] for r in rows] == [back.class_names[y] for y in back.labels]
    for r, scores in zip(rows, lp, strict=True):
        order = np.argsort(-scores, kind="stable")[:3]
        assert [t["label"] for t in r["top"]] == [back.class_names[c] for c in order]
        np.testing.assert_allclose([t["score"] for t in r["top"]], np.exp(scores[order]), rtol=1e-12)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["video"]["protocol"] == "video accuracy"


def test_report_without_matplotlib_still_writes_data(tmp_path, no_matplotlib):
    p = _preds()
    written = write_report(tmp_path, {"clip": (p, summarize(p.log_probs(), p.labels))})
    assert not any(w.suffix == ".png" for w in written) and (tmp_path / "clip_predictions.jsonl").is_file()


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as the trainer leaves it: CSV logs (written by the trainer's own sink), config, test output."""
    run = tmp_path / "runs" / "frames" / "tiny_3d"
    sink = CSVSink(run)
    for epoch in range(4):
        sink.epoch("train", {"epoch": epoch, "loss": 2.0 / (epoch + 1), "top1": 0.2 * epoch, "top5": 0.5 + 0.1 * epoch,
                             "lr": 0.1 * (4 - epoch), "clips_per_s": 50.0 + epoch, "time": 3.0})
        # Validation peaks at epoch 2 (0.8), not at the last epoch.
        sink.epoch("val", {"epoch": epoch, "loss": [1.5, 1.0, 0.6, 0.9][epoch], "top1": [0.3, 0.6, 0.8, 0.7][epoch],
                           "top5": 0.9, "lr": 0.1 * (4 - epoch), "clips_per_s": 120.0, "time": 0.5})
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "frames", "clip_length": 8},
                                                      "model": {"network": "tiny_3d"}}))
    test = run / "test-val"
    test.mkdir()
    (test / "summary.json").write_text(json.dumps({
        "checkpoint": str(run / "checkpoints" / "ep-0003.pth"), "split": "val",
        "clip": {"protocol": "clip accuracy (1 centre clip)", "videos": 8, "top1": 0.75, "top5": 1.0,
                 "mean_class_accuracy": 0.75, "loss": 0.5},
        "video": {"protocol": "video accuracy (10 clips x 3 crops)", "videos": 8, "top1": 0.875, "top5": 1.0,
                  "mean_class_accuracy": 0.875, "loss": 0.4},
    }))
    # Another run's test next to this one must not be reported as this run's.
    other = run.parent / "test-other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"checkpoint": str(run.parent / "tiny_2d" / "x.pth"),
                                                    "clip": {"top1": 0.1}}))
    return run


def test_report_command_draws_curves_and_summary(run_dir):
    pytest.importorskip("matplotlib")
    r = CliRunner().invoke(app, ["report", str(run_dir)])
    assert r.exit_code == 0, r.output
    w, h = png_size(run_dir / "curves.png")
    assert (w, h) == (1430, 770)  # 13 x 7 inches at 110 dpi: six panels
    md = (run_dir / "report.md").read_text()
    assert "- best epoch: 2 (val top-1 80.00%, loss 0.6000" in md and "- epochs trained: 4" in md
    assert "| final val | 3 | 0.9000 | 70.00% |" in md and "| best val | 2 | 0.6000 | 80.00% |" in md
    assert "| video accuracy (10 clips x 3 crops) | 8 | 87.50% |" in md and "test-other" not in md
    assert "![training curves](curves.png)" in md and "network: tiny_3d" in md


def test_report_without_matplotlib_is_one_line_and_keeps_the_summary(run_dir, no_matplotlib):
    r = CliRunner().invoke(app, ["report", str(run_dir)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "pip install 'vidnet[plot]'" in r.output and len(r.output.strip().splitlines()) == 1
    md = (run_dir / "report.md").read_text()
    assert "best epoch: 2" in md and "Not drawn" in md and not (run_dir / "curves.png").exists()


def test_report_errors(tmp_path):
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such run folder" in r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "no train.csv or val.csv" in r.output


def test_report_best_epoch_is_the_trainers(tmp_path):
    # Two epochs tie on top-1; the trainer keeps the first in best.pth (improves_best: strictly higher), and the
    # report names the same epoch, not the later one with the lower loss.
    from vidnet.eval.metrics import improves_best
    from vidnet.eval.run_report import read_run, write_summary

    run = tmp_path / "run"
    sink = CSVSink(run)
    for epoch, (loss, top1) in enumerate([(1.5, 0.3), (1.0, 0.8), (0.6, 0.8), (0.9, 0.7)]):
        sink.epoch("val", {"epoch": epoch, "loss": loss, "top1": top1, "top5": 0.9, "lr": 0.1})
    best, kept = 0.0, None
    for epoch, top1 in enumerate([0.3, 0.8, 0.8, 0.7]):  # the trainer's loop
        if improves_best(top1, best):
            best, kept = top1, epoch
    md = write_summary(read_run(run), run / "report.md").read_text()
    assert kept == 1 and "- best epoch: 1 (val top-1 80.00%, loss 1.0000" in md


def test_the_first_validation_is_the_best_so_far_even_at_zero():
    """A run whose validations all score 0 % still has a best epoch (and the trainer a best.pth): the first one;
    later ties keep it, NaN never wins."""
    from vidnet.eval.metrics import best_index, improves_best

    assert improves_best(0.0, None) and not improves_best(float("nan"), None)
    assert best_index([0.0, 0.0]) == 0 and best_index([float("nan"), 0.0, 0.5, 0.5]) == 2 and best_index([]) is None
