"""``vidnet predict`` and ``vidnet test`` build the same clip from the same frames, whatever the dataset family:
both take the transform rule, mean/std and clip shape from the checkpoint's preprocessing record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.eval.metrics import softmax
from vidnet.eval.multiview import Predictions


@pytest.mark.parametrize(("family", "augment"), [("jester", []), ("ucf101", []), ("ucf101", ["--augment", "light"])])
def test_predict_equals_test_for_a_centre_clip(family, augment, tiny_dataset, tmp_path):
    # "light" resizes the 64x48 frames straight to 16x16: the dataset decodes the JPEGs at a reduced scale,
    # and predict must decode them the same way.
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    (data / "dataset.json").write_text(json.dumps({"name": family, "hflip": family != "jester"}))
    runs = tmp_path / "runs"
    r = CliRunner().invoke(app, ["train", "-n", "tiny_3d", "--dataset", str(data), "--model-dir", str(runs),
                                 "--clip-length", "4", "--clip-size", "16", "--batch-size", "2", "--workers", "0",
                                 "--no-tensorboard", "--end-epoch", "1", "--train-frame-interval", "1",
                                 "--val-frame-interval", "1", "--precise-bn", "off", *augment])
    # --precise-bn off: over 2 batches of 2 clips precise BN leaves last-layer variances near 3e-4, which turn
    # float rounding (test and predict batch the clips differently) into visible differences of probability.
    assert r.exit_code == 0, r.output
    ckpt = runs / "data" / "tiny_3d" / "checkpoints" / "ep-0001.pth"
    r = CliRunner().invoke(app, ["test", "-c", str(ckpt), "-d", str(data), "--clips", "1", "--crops", "1",
                                 "--out", str(tmp_path / "test")])
    assert r.exit_code == 0, r.output
    tested = Predictions.load(tmp_path / "test" / "clip_logits.npz")
    for i, video in enumerate(tested.video_ids):
        store = next(data.glob(f"*/{video}/frames.db"))
        r = CliRunner().invoke(app, ["predict", str(store), "-c", str(ckpt), "--clips", "1", "--crops", "1",
                                     "-k", "2", "--json"])
        assert r.exit_code == 0, r.output
        predicted = {t["label"]: t["score"] for t in json.loads(r.output)["top"]}
        expected = softmax(tested.logits[i, 0][None])[0]
        got = np.array([predicted[name] for name in tested.class_names])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"{family} {video}")
