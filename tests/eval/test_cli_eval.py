"""``vidnet test``, ``predict`` and ``fuse`` end to end on the tiny dataset and a real 1-epoch checkpoint."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.eval.multiview import Predictions


@pytest.fixture(scope="module")
def tested(tiny_dataset, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("test_out")
    args = ["test", "-c", str(tiny_checkpoint), "-d", str(tiny_dataset), "--clips", "4", "--crops", "3",
            "--batch-size", "8", "--out", str(out), "--top-k", "1,5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_test_prints_both_accuracies_and_writes_files(tested, tiny_checkpoint):
    out, output = tested
    assert "clip accuracy (1 centre clip):" in output and "video accuracy (4 clips x 3 crops):" in output
    assert "most confused:" in output
    for name in ("clip", "video"):
        for suffix in ("_confusion.npy", "_confusion.csv", "_predictions.csv", "_predictions.jsonl", "_logits.npz"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    summary = json.loads((out / "summary.json").read_text())
    # Clip accuracy is what the trainer validated on: same clips, same transform, same loss.
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    val = list(csv.DictReader((tiny_checkpoint.parent.parent / "val.csv").open()))[-1]
    # abs: a loss near 0 is 0.0 in the trainer's float32 and ~1e-10 in the evaluation's float64 log-softmax.
    assert summary["clip"]["loss"] == pytest.approx(float(val["loss"]), rel=1e-4, abs=1e-6)
    assert summary["clip"]["top1"] == pytest.approx(float(val["top1"]))
    video = Predictions.load(out / "video_logits.npz")
    assert video.logits.shape == (2, 12, len(ckpt["labels"])) and video.video_ids == ["move_left_002",
                                                                                       "move_right_002"]
    cm = np.load(out / "video_confusion.npy")
    assert cm.sum() == 2 and cm.trace() / 2 == pytest.approx(summary["video"]["top1"])
    rows = list(csv.DictReader((out / "video_predictions.csv").open()))
    assert [r["label"] for r in rows] == ["move_left", "move_right"] and {"pred1", "score1", "pred2"} <= set(rows[0])
    assert rows[0]["pred1"] == video.class_names[int(video.log_probs()[0].argmax())]


def test_test_is_deterministic(tested, tiny_dataset, tiny_checkpoint, tmp_path):
    out, _ = tested
    result = CliRunner().invoke(app, ["test", "-c", str(tiny_checkpoint), "-d", str(tiny_dataset), "--clips", "4",
                                      "--out", str(tmp_path), "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    a, b = Predictions.load(out / "video_logits.npz"), Predictions.load(tmp_path / "video_logits.npz")
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)


def test_predict_video_and_store_agree(tiny_dataset, tiny_checkpoint, tested):
    out, _ = tested
    video = tiny_dataset.parent / "videos" / "move_left" / "move_left_002.mp4"
    store = tiny_dataset / "move_left" / "move_left_002"
    res = {}
    for src in (video, store):
        r = CliRunner().invoke(app, ["predict", str(src), "-c", str(tiny_checkpoint), "--clips", "4", "--json"])
        assert r.exit_code == 0, r.output
        res[src] = json.loads(r.output)
        assert res[src]["views"] == 12 and res[src]["frames"] == 9
    # The store path reproduces `vidnet test`'s video score for that video exactly (same sampler, transform).
    expected = np.exp(Predictions.load(out / "video_logits.npz").log_probs()[0])
    got = {t["label"]: t["score"] for t in res[store]["top"]}
    assert got["move_left"] == pytest.approx(expected[0], rel=1e-4)
    # Re-encoded video frames differ slightly from the stored JPEGs, but the ranking holds on this clip.
    assert [t["label"] for t in res[video]["top"]] == [t["label"] for t in res[store]["top"]]
    r = CliRunner().invoke(app, ["predict", str(video), "-c", str(tiny_checkpoint), "-k", "1", "--clips", "1",
                                 "--crops", "1"])
    assert r.exit_code == 0 and "1. move_" in r.output and " s):" in r.output


def test_fuse_side_by_side(tested, tmp_path):
    out, _ = tested
    r = CliRunner().invoke(app, ["fuse", str(out / "clip_logits.npz"), str(out / "video_logits.npz"),
                                 "--method", "logsum", "--weights", "1,3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("tiny_3d 1 views:") and lines[1].startswith("tiny_3d 12 views:")
    assert lines[2].startswith("fused (logsum):") and (tmp_path / "fused_logits.npz").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["test", "-c", "nope.pth", "-d", "."], "nope.pth: checkpoint not found"),
        (["predict", "nope.mp4", "-c", "CKPT"], "nope.mp4: no such video file"),
        (["test", "-c", "CKPT", "-d", "DATA", "--crops", "2"], "--crops must be 1 or 3"),
        (["test", "-c", "CKPT", "-d", "DATA", "--top-k", "x"], "--top-k"),
    ],
)
def test_errors_are_one_line(args, message, tiny_checkpoint, tiny_dataset):
    args = [str(tiny_checkpoint) if a == "CKPT" else str(tiny_dataset) if a == "DATA" else a for a in args]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_predict_on_what_is_not_a_video_says_what_it_is(tiny_checkpoint, tmp_path):
    # A playlist naming missing files made FFmpeg answer "No such file or directory" for a file that exists;
    # a folder without a store was "<folder>/frames.db: no such store".
    playlist = tmp_path / "clips.ffconcat"
    playlist.write_text("ffconcat version 1.0\nfile missing.mp4\n")
    cases = {playlist: "not a video (FFmpeg read it as a playlist", tmp_path: "a folder without a frames.db",
             tmp_path / "nope.mp4": "no such video file or frame store"}
    for source, reason in cases.items():
        r = CliRunner().invoke(app, ["predict", str(source), "-c", str(tiny_checkpoint)])
        assert r.exit_code in (1, 2) and f"{source}: {reason}" in " ".join(r.output.split()), r.output
        assert "No such file or directory" not in r.output and "Traceback" not in r.output
