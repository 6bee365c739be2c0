"""Parity with the reference code of the 2026 model line, and each ecosystem checkpoint layout through the door.

Each ``parity_fixtures/<model>.<layout>.json.gz`` was made by building the reference implementation
(PySlowFast, PyTorchVideo, MMAction2 or torchvision; the ``reference`` field names the repository, commit and
constructor), counting its parameters at 400 classes, and running the parity clip through it in eval mode with
its state dict filled by :func:`vidnet.testing.parity_value` under the reference's own key names (see
``parity_fixtures/README.md``). vidnet's model must load that state dict through
:func:`~vidnet.network.weights.load_weights` with nothing skipped and nothing missing, and reproduce the logits.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from vidnet.network import create_model
from vidnet.network.cost import count_parameters
from vidnet.network.weights import load_weights
from vidnet.testing import parity_clip, parity_state_dict

FIXTURES = Path(__file__).parent / "parity_fixtures"
SLOW = {"slowfast_r101_8x8"}


def _load(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _cases() -> list:
    out = []
    for path in sorted(FIXTURES.glob("*.json.gz")):
        name = path.name.split(".")[0]
        marks = [pytest.mark.slow] if name in SLOW else []
        out.append(pytest.param(path, id=path.name.removesuffix(".json.gz"), marks=marks))
    return out


CASES = _cases()


def _inputs(fixture: dict) -> torch.Tensor:
    return parity_clip(tuple(fixture["input_shape"]))


@pytest.mark.parametrize("path", CASES)
def test_layout_loads_completely_and_reproduces_logits(path):
    fixture = _load(path)
    with torch.device("meta"):  # every entry is loaded below, so the initialisation is skipped
        model = create_model(fixture["name"], num_classes=fixture["num_classes"], **fixture.get("options", {}))
    model = model.to_empty(device="cpu").eval()
    original = parity_state_dict(fixture)
    report = load_weights(model, original)
    assert not report.skipped, report.summary()
    assert not report.missing, report.summary()
    with torch.no_grad():
        logits = model(_inputs(fixture))
    reference = torch.tensor(fixture["logits"])
    assert logits.shape == reference.shape
    diff = (logits - reference).abs().max().item()
    assert diff <= 1e-4 * max(1.0, fixture["logits_absmax"]), f"{path.name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("path", CASES)
def test_parameter_count_equals_reference(path):
    """The count at 400 classes equals the reference code's (PyTorchVideo's X3D has 48 fewer: no norm on the
    first stage's shortcut, which vidnet fills with an exact identity when loading its files). Counted at the
    registered settings plus the fixture's ``params_options`` (MMAction2's SlowFast: ``lateral="conv"``); a
    fixture's ``options`` (e.g. a smaller clip for MViTv2's position tables) apply to its logits only."""
    fixture = _load(path)
    with torch.device("meta"):
        model = create_model(fixture["name"], num_classes=400, **fixture.get("params_options", {}))
    expected = fixture["params_400"] + fixture.get("params_400_offset", 0)
    assert count_parameters(model) == expected


def test_kinetics_weights_fine_tune_with_a_new_head():
    """A 400-class file into a 7-class model: everything but the classifier loads, and the report says so."""
    fixture = _load(FIXTURES / "x3d_xs.pyslowfast.json.gz")
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
