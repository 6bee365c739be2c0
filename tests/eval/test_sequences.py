"""Per-frame averaging and whole-video single-pass evaluation, and which models get per-frame by default."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.preprocessing import normalize
from vidnet.eval.multiview import (
    Predictions,
    is_single_frame,
    load_eval_model,
    make_sequence_dataset,
    predict_sequences,
)


@pytest.fixture(scope="module")
def em(tiny_checkpoint):
    return load_eval_model(tiny_checkpoint)


def _model_logits(em, clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return em.model(normalize(clip, em.mean, em.std)).double()


def test_per_frame_is_the_mean_of_frame_log_probs(em, tiny_dataset):
    ds = make_sequence_dataset(tiny_dataset, "val", em, mode="frames")
    preds = predict_sequences(em, ds, mode="frames", batch_size=3)
    assert preds.logits.shape == (len(ds), 1, len(em.class_names)) and "per-frame" in preds.model
    for i in range(len(ds)):
        item = ds[i]
        clip = item["clip"]  # [C, T, H, W] with T = every frame of the video
        assert clip.shape[1] == ds.n_frames(i) and item["frames"].tolist() == list(range(ds.n_frames(i)))
        frames = clip.transpose(0, 1).unsqueeze(2)  # each frame alone: [T, C, 1, H, W]
        expected = torch.log_softmax(_model_logits(em, frames), dim=1).mean(dim=0)
        # The seed's rule, mean (not sum, not softmax average) of frame log-probabilities, renormalised.
        np.testing.assert_allclose(preds.log_probs()[i], torch.log_softmax(expected, 0).numpy(), rtol=1e-4, atol=1e-5)
        probs_mean = torch.softmax(_model_logits(em, frames), dim=1).mean(dim=0).log()
        assert not np.allclose(preds.log_probs()[i], probs_mean.numpy(), atol=1e-6)


def test_whole_video_is_one_forward_pass(em, tiny_dataset):
    ds = make_sequence_dataset(tiny_dataset, "val", em, mode="sequence")
    preds = predict_sequences(em, ds, mode="sequence")
    for i in range(len(ds)):
        item = ds[i]
        n = ds.n_frames(i)
        # Every interval-th frame of the whole video, not a fixed-length clip.
        assert item["frames"].tolist() == list(range(0, n, em.interval))
        np.testing.assert_allclose(preds.logits[i, 0], _model_logits(em, item["clip"][None])[0].numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_single_frame_detection(em):
    assert not is_single_frame(em)  # tiny_3d on 4-frame clips
    # trained on single frames, whatever the network
    assert is_single_frame(replace(em, preprocessing=em.preprocessing.replace(clip_length=1)))
    assert is_single_frame(replace(em, network="tiny_2d"))  # registry depth tag 2d
    assert is_single_frame(replace(em, network="frame_resnet18"))  # registry family frame2d
    assert not is_single_frame(replace(em, network="r3d_18"))
    with pytest.raises(Exception, match="mode"):
        make_sequence_dataset(".", "val", em, mode="clips")


def test_test_command_labels_both_modes(tiny_checkpoint, tiny_dataset, tmp_path):
    r = CliRunner().invoke(app, ["test", "-c", str(tiny_checkpoint), "-d", str(tiny_dataset), "--clips", "2",
                                 "--crops", "1", "--per-frame", "--whole-video", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "per-frame average (every frame, mean log-prob):" in r.output
    assert "whole video (one pass, interval 1):" in r.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocols"] == ["clip", "video", "frames", "sequence"]
    assert summary["frames"]["protocol"].startswith("per-frame") and summary["sequence"]["protocol"].startswith("whole")
    for name in ("frames", "sequence"):
        for suffix in ("_confusion.npy", "_confusion.csv", "_predictions.csv", "_predictions.jsonl"):
            assert (tmp_path / f"{name}{suffix}").is_file(), name + suffix
        p = Predictions.load(tmp_path / f"{name}_logits.npz")
        assert p.logits.shape[1] == 1 and p.model.endswith("per-frame average" if name == "frames" else "whole video")
    # Without the flags a 3D model gets neither extra protocol.
    r = CliRunner().invoke(app, ["test", "-c", str(tiny_checkpoint), "-d", str(tiny_dataset), "--clips", "1",
                                 "--crops", "1", "--out", str(tmp_path / "plain")])
    assert r.exit_code == 0 and "per-frame" not in r.output and "whole video" not in r.output
