"""Parity with the reference code of the 2026 model line, and each ecosystem checkpoint layout through the door.

Each ``parity/<model>.<layout>.json.gz`` was made by building the reference implementation
(PySlowFast, PyTorchVideo, MMAction2 or torchvision; the ``reference`` field names the repository, commit and
constructor), counting its parameters at 400 classes, and running the parity clip through it in eval mode with
its state dict filled by :func:`vidnet.testing.parity_value` under the reference's own key names (see
``parity/README.md``). vidnet's model must load that state dict through
:func:`~vidnet.network.weights.load_weights` with nothing skipped and nothing missing, and reproduce the logits.
"""

from __future__ import annotations

import pytest
import torch

from vidnet.network import create_model
from vidnet.network.cost import count_parameters
from vidnet.network.weights import load_weights
from vidnet.testing import load_parity_fixture, parity_clip, parity_dir, parity_state_dict

SLOW = {"slowfast_r101_8x8"}


def _cases() -> list:
    """The ``<model>.<layout>`` fixtures (the gzipped ones; the plain ``.json`` ones are the original code's)."""
    out = []
    for path in sorted(parity_dir().glob("*.json.gz")):
        fixture = path.name.removesuffix(".json.gz")
        marks = [pytest.mark.slow] if fixture.split(".")[0] in SLOW else []
        out.append(pytest.param(fixture, id=fixture, marks=marks))
    return out


CASES = _cases()


def _inputs(fixture: dict) -> torch.Tensor:
    return parity_clip(tuple(fixture["input_shape"])).to(_dtype(fixture))


def _dtype(fixture: dict) -> torch.dtype:
    """X3D's fixtures were computed in float64: under the parity fill its activations reach 1e3-1e7, where
    float32 results depend on the convolution algorithm (8e-4 relative between two CPU code paths)."""
    return getattr(torch, fixture.get("dtype", "float32"))


@pytest.mark.parametrize("name", CASES)
def test_layout_loads_completely_and_reproduces_logits(name):
    fixture = load_parity_fixture(name)
    with torch.device("meta"):  # every entry is loaded below, so the initialisation is skipped
        model = create_model(fixture["name"], num_classes=fixture["num_classes"], **fixture.get("options", {}))
    model = model.to_empty(device="cpu").to(_dtype(fixture)).eval()
    original = parity_state_dict(fixture)
    report = load_weights(model, original)
    assert not report.skipped, report.summary()
    assert not report.missing, report.summary()
    with torch.no_grad():
        logits = model(_inputs(fixture))
    reference = torch.tensor(fixture["logits"])
    assert logits.shape == reference.shape
    diff = (logits - reference).abs().max().item()
    assert diff <= 1e-4 * max(1.0, fixture["logits_absmax"]), f"{name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("name", CASES)
def test_parameter_count_equals_reference(name):
    """The count at 400 classes equals the reference code's (PyTorchVideo's X3D has 48 fewer: no norm on the
    first stage's shortcut, which vidnet fills with an exact identity when loading its files). Counted at the
    registered settings plus the fixture's ``params_options`` (MMAction2's SlowFast: ``lateral="conv"``); a
    fixture's ``options`` (e.g. a smaller clip for MViTv2's position tables) apply to its logits only."""
    fixture = load_parity_fixture(name)
    with torch.device("meta"):
        model = create_model(fixture["name"], num_classes=400, **fixture.get("params_options", {}))
    expected = fixture["params_400"] + fixture.get("params_400_offset", 0)
    assert count_parameters(model) == expected


def test_kinetics_weights_fine_tune_with_a_new_head():
    """A 400-class file into a 7-class model: everything but the classifier loads, and the report says so."""
    fixture = load_parity_fixture("x3d_xs.pyslowfast")
    original = parity_state_dict(fixture)
    with torch.device("meta"):
        model = create_model("x3d_xs", num_classes=7)
    model = model.to_empty(device="cpu")
    report = load_weights(model, original)
    assert report.remapped and set(report.skipped) == {"fc.weight", "fc.bias"}
    assert all("shape" in why for why in report.skipped.values())
    assert set(report.missing) == {"fc.weight", "fc.bias"}


def test_own_layout_passes_the_remap_unchanged():
    """A checkpoint vidnet saved itself loads without any remapping for every new family."""
    for name in ("x3d_xs", "slowfast_r50_4x16", "mvit_v2_s", "mc3_18"):
        with torch.device("meta"):
            model = create_model(name, num_classes=3)
        sd = model.state_dict()
        assert model.remap_original_state_dict(dict(sd)).keys() == sd.keys(), name


WRAPPERS = {
    # PySlowFast and PyTorchVideo hub files: {"model_state": ..., "optimizer_state": ..., "cfg": ...}
    "x3d_xs.pyslowfast": lambda sd: {"epoch": 300, "model_state": sd, "cfg": "MODEL:\n  ARCH: x3d\n"},
    "x3d_m.pytorchvideo": lambda sd: {"model_state": sd},
    # MMAction2: {"meta": ..., "state_dict": {"backbone.*", "cls_head.*"}}
    "slowfast_r50_4x16.mmaction2": lambda sd: {"meta": {"epoch": 256}, "state_dict": sd},
    # torchvision: the bare state dict
    "mvit_v2_s.torchvision": lambda sd: sd,
}


@pytest.mark.parametrize("fixture", sorted(WRAPPERS))
def test_checkpoint_file_of_each_ecosystem_loads_through_the_door(fixture, tmp_path):
    """The files as each ecosystem saves them (wrapper included) load completely from disk."""
    fx = load_parity_fixture(fixture)
    path = tmp_path / "weights.pth"
    torch.save(WRAPPERS[fixture](parity_state_dict(fx)), path)
    with torch.device("meta"):
        model = create_model(fx["name"], num_classes=fx["num_classes"], **fx.get("options", {}))
    model = model.to_empty(device="cpu").to(_dtype(fx)).eval()
    report = load_weights(model, path)
    assert report.complete and report.remapped, report.summary()
    with torch.no_grad():
        logits = model(_inputs(fx))
    diff = (logits - torch.tensor(fx["logits"])).abs().max().item()
    assert diff <= 1e-4 * max(1.0, fx["logits_absmax"])


@pytest.mark.slow
def test_cli_fine_tunes_x3d_from_a_pyslowfast_checkpoint(frozen_pretrained_weights, tmp_path):
    """``vidnet train --pretrained-3d FILE --network x3d_xs``: the Kinetics weights fill the trunk, the head is new."""
    fx = load_parity_fixture("x3d_xs.pyslowfast")
    path = tmp_path / "x3d_xs.pyth"
    torch.save({"model_state": parity_state_dict(fx)}, path)
    reference = create_model("x3d_xs", num_classes=fx["num_classes"])
    load_weights(reference, path)
    trained = frozen_pretrained_weights("x3d_xs", path, clip_size=32)
    for key in ("stem.conv_xy.weight", "layer3.4.se.fc1.weight", "lin5.weight"):
        torch.testing.assert_close(trained[key], reference.state_dict()[key], rtol=0, atol=1e-6, msg=key)
    assert trained["fc.weight"].shape[0] != fx["num_classes"]  # the tiny dataset's classes: a new head


@pytest.mark.slow
def test_cli_predict_with_an_mmaction2_checkpoint_network_and_labels(tiny_dataset, tmp_path):
    """``vidnet predict CLIP -c FILE --network NAME --labels labels.json`` on a file saved by MMAction2."""
    import json

    from typer.testing import CliRunner

    from vidnet.cli import app
    from vidnet.eval.multiview import load_eval_model

    fx = load_parity_fixture("x3d_m.mmaction2")
    path = tmp_path / "x3d_m_mmaction2.pth"
    torch.save({"meta": {"epoch": 300}, "state_dict": parity_state_dict(fx)}, path)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({f"class_{i}": i for i in range(fx["num_classes"])}))
    em = load_eval_model(path, network="x3d_m", labels=labels, clip_length=4, clip_size=64, interval=1)
    with torch.no_grad():
        logits = em.model.to(_dtype(fx)).eval()(_inputs(fx))
    assert (logits - torch.tensor(fx["logits"])).abs().max().item() <= 1e-4 * max(1.0, fx["logits_absmax"])
    store = tiny_dataset / "move_right" / "move_right_002"
    r = CliRunner().invoke(app, ["predict", str(store), "-c", str(path), "--network", "x3d_m", "--labels", str(labels),
                                 "--clips", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert {t["label"] for t in json.loads(r.output)["top"]} <= {f"class_{i}" for i in range(fx["num_classes"])}
