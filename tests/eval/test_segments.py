"""Segment datasets (several stores cut from one source video): every prediction is keyed by its store."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import numpy as np
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.index import read_index
from vidnet.eval.explorer import ThumbnailOptions
from vidnet.eval.multiview import Predictions


def _test(checkpoint, dataset, out, *extra):
    r = CliRunner().invoke(app, ["test", "-c", str(checkpoint), "-d", str(dataset), "--clips", "2", "--crops", "1",
                                 "--out", str(out), "--top-k", "1,2", *extra])
    assert r.exit_code == 0, r.output
    return out


def test_predictions_are_keyed_by_store_and_fuse_on_segments(segment_dataset, tiny_checkpoint, tmp_path):
    rows = [r for r in read_index(segment_dataset / "index.csv") if r.split == "val"]
    assert len({r.id for r in rows}) < len(rows)  # ids repeat: two segments per source video
    out = _test(tiny_checkpoint, segment_dataset, tmp_path / "a")
    # A file fused with itself gives itself back (it said "model 1 covers other videos than model 1").
    r = CliRunner().invoke(app, ["fuse", str(out / "video_logits.npz"), str(out / "video_logits.npz"),
                                 "--out", str(tmp_path / "self")])
    assert r.exit_code == 0, r.output
    fused = Predictions.load(tmp_path / "self" / "fused_logits.npz")
    video = Predictions.load(out / "video_logits.npz")
    np.testing.assert_allclose(fused.log_probs(), video.log_probs(), rtol=1e-5, atol=1e-6)
    lines = r.output.splitlines()
    assert lines[0].split(":")[1].strip() == lines[2].split(":")[1].strip()  # the model alone's numbers

    # Keyed by store (unique), with the index id and the segment times as columns.
    assert video.keys == [r.key for r in rows] == [r.path.split("/")[-1] for r in rows]
    assert len(set(video.keys)) == len(rows) and video.video_ids == [r.id for r in rows]
    np.testing.assert_array_equal(video.time_start, [r.time_start for r in rows])
    np.testing.assert_array_equal(video.time_end, [r.time_end for r in rows])
    table = list(csv.DictReader((out / "video_predictions.csv").open()))
    assert [t["key"] for t in table] == video.keys and [t["video_id"] for t in table] == video.video_ids
    assert [(float(t["time_start"]), float(t["time_end"])) for t in table] == [(r.time_start, r.time_end)
                                                                               for r in rows]
    lines = [json.loads(line) for line in (out / "video_predictions.jsonl").read_text().splitlines()]
    assert [x["key"] for x in lines] == video.keys and [x["time_end"] for x in lines] == [r.time_end for r in rows]
    assert fused.keys == video.keys

    # The explorer draws each segment from its own store: two thumbnails per source video, not one. It draws
    # the clips a model gets wrong: a comparison that predicts the other of the 2 classes makes that every clip,
    # whatever the trained model gets right.
    from vidnet.eval.explorer import write_explorer

    clip = Predictions.load(out / "clip_logits.npz")
    assert len(clip.class_names) == 2
    wrong = dataclasses.replace(clip, logits=clip.logits[..., ::-1].copy(), model="the other class")
    res = write_explorer(tmp_path / "page", out, protocol="clip", compare=wrong,
                         thumbnails=ThumbnailOptions(budget_mb=1))
    page = (tmp_path / "page" / "report.html").read_text()
    data = json.loads(re.search(r'id="vidnet-data">(.*?)</script>', page).group(1))
    drawn = [t for t in data["clips"]["thumb"] if t]
    assert data["clips"]["key"] == video.keys and data["clips"]["t0"] == [r.time_start for r in rows]
    assert len(set(drawn)) == len(drawn) == res.thumbnails == len(rows) and not res.failed, data["clips"]["key"]


def test_fuse_two_models_on_segments(segment_dataset, tiny_checkpoint, tmp_path):
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    cfg = TrainConfig.from_flat({
        "network": "tiny_2d", "dataset": str(segment_dataset), "model_dir": str(tmp_path / "runs"), "workers": 0,
        "batch_size": 2, "end_epoch": 1, "clip_length": 1, "clip_size": 16, "train_frame_interval": "1",
        "val_frame_interval": 1, "tensorboard": False,
    })
    other = train(cfg).run_dir / "checkpoints" / "ep-0001.pth"
    a = _test(tiny_checkpoint, segment_dataset, tmp_path / "a")
    b = _test(other, segment_dataset, tmp_path / "b", "--no-per-frame")
    r = CliRunner().invoke(app, ["fuse", str(a / "video_logits.npz"), str(b / "clip_logits.npz"), "--weights", "1,1",
                                 "--out", str(tmp_path / "fused")])
    assert r.exit_code == 0, r.output
    pa, pb = Predictions.load(a / "video_logits.npz"), Predictions.load(b / "clip_logits.npz")
    fused = Predictions.load(tmp_path / "fused" / "fused_logits.npz")
    expected = np.log((np.exp(pa.log_probs()) + np.exp(pb.log_probs())) / 2)
    assert fused.keys == pa.keys and len(set(fused.keys)) == 4
    np.testing.assert_allclose(fused.log_probs(), expected, rtol=1e-5, atol=1e-6)
