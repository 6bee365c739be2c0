"""Multi-view averaging, fusion rules, the predictions round trip and bare state dicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.errors import UsageError, VidnetError
from vidnet.eval.fusion import fuse_predictions
from vidnet.eval.multiview import Predictions, load_eval_model


def preds(logits, ids=("a", "b"), labels=(0, 1)):
    return Predictions(video_ids=list(ids), labels=np.array(labels), class_names=["x", "y"],
                       logits=np.asarray(logits, dtype=np.float32))


def test_views_average_softmax_not_logits():
    # One view is very sure of class 1, two views prefer class 0: the mean of probabilities picks class 0,
    # the mean of logits ([2, 3.33]) would pick class 1.
    p = preds([[[0.0, 10.0], [3.0, 0.0], [3.0, 0.0]]], ids=("a",), labels=(0,))
    s = [1 / (1 + math.exp(10)), 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-3))]
    assert np.exp(p.log_probs()[0, 0]) == pytest.approx(sum(s) / 3, rel=1e-5)
    assert p.log_probs()[0].argmax() == 0 and p.logits[0].mean(axis=0).argmax() == 1


def test_round_trip(tmp_path):
    p = preds(np.arange(12).reshape(2, 3, 2))
    q = Predictions.load(p.save(tmp_path / "p.npz"))
    assert q.video_ids == p.video_ids and q.class_names == p.class_names
    np.testing.assert_array_equal(q.logits, p.logits)
    np.testing.assert_array_equal(q.labels, p.labels)
    (tmp_path / "bad.npz").write_text("no")
    with pytest.raises(VidnetError, match="bad.npz: not a vidnet predictions file"):
        Predictions.load(tmp_path / "bad.npz")


def test_fusion_rules():
    a = preds(np.log([[[0.9, 0.1]], [[0.6, 0.4]]]))
    b = preds(np.log([[[0.3, 0.7]], [[0.2, 0.8]]]))
    mean = np.exp(fuse_predictions([a, b]).log_probs())
    np.testing.assert_allclose(mean, [[0.6, 0.4], [0.4, 0.6]], rtol=1e-5)
    weighted = np.exp(fuse_predictions([a, b], weights=[3, 1]).log_probs())
    np.testing.assert_allclose(weighted[0], [0.75, 0.25], rtol=1e-5)
    prod = np.exp(fuse_predictions([a, b], method="logsum").log_probs())
    z = math.sqrt(0.9 * 0.3) + math.sqrt(0.1 * 0.7)
    np.testing.assert_allclose(prod[0], [math.sqrt(0.27) / z, math.sqrt(0.07) / z], rtol=1e-5)
    # Videos are matched by id, whatever their order in each file.
    swapped = preds(b.logits[::-1], ids=("b", "a"), labels=(1, 0))
    np.testing.assert_allclose(np.exp(fuse_predictions([a, swapped]).log_probs()), mean, rtol=1e-5)


@pytest.mark.parametrize(
    ("other", "kw", "err"),
    [
        (preds(np.zeros((2, 1, 2)), ids=("a", "c")), {}, VidnetError),
        (preds(np.zeros((2, 1, 2)), labels=(1, 1)), {}, VidnetError),
        (preds(np.zeros((2, 1, 2))), {"weights": [1]}, UsageError),
        (preds(np.zeros((2, 1, 2))), {"method": "max"}, UsageError),
    ],
)
def test_fusion_rejects_mismatches(other, kw, err):
    with pytest.raises(err):
        fuse_predictions([preds(np.zeros((2, 1, 2))), other], **kw)


def test_bare_state_dict_with_network_and_labels(tiny_checkpoint, tiny_dataset, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    bare = tmp_path / "bare.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ckpt["model"].items()}}, bare)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(ckpt["labels"]))
    with pytest.raises(VidnetError, match="give --labels labels.json and --network NAME"):
        load_eval_model(bare)
    em = load_eval_model(bare, network="tiny_3d", labels=labels, clip_length=4, clip_size=16, interval=1)
    ref = load_eval_model(tiny_checkpoint)
    x = torch.randn(1, 3, 4, 16, 16)
    torch.testing.assert_close(em.model(x), ref.model(x))
    store = tiny_dataset / "move_right" / "move_right_002"
    r = CliRunner().invoke(app, ["predict", str(store), "-c", str(bare), "--network", "tiny_3d", "--labels",
                                 str(labels), "--json"])
    assert r.exit_code == 0, r.output
    assert {t["label"] for t in json.loads(r.output)["top"]} == {"move_left", "move_right"}
