"""Numerical parity with the original SRTG code: its key layout loads and the logits match (parity/README.md)."""

from __future__ import annotations

import pytest
import torch

from vidnet.network import create_model
from vidnet.network.weights import load_weights
from vidnet.testing import load_parity_fixture, parity_clip, parity_state_dict

FIXTURES = ["r3d_18", "r2plus1d_18", "srtg_r3d_18", "srtg_r2plus1d_18", "srtg_r3d_50", "ir_csn_50", "ip_csn_50"]


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return parity_clip()


@pytest.mark.parametrize("name", FIXTURES)
def test_original_checkpoint_layout_reproduces_logits(name, clip):
    fixture = load_parity_fixture(name)
    # The fixtures were made with the original constructors: recursion=True, gates=False for srtg_*.
    options = {"gates": False} if name.startswith("srtg_") else {}
    model = create_model(name, num_classes=fixture["num_classes"], **options).eval()
    original = parity_state_dict(fixture)
    report = load_weights(model, {"state_dict": {f"module.{k}": v for k, v in original.items()}}, strict=True)
    assert report.complete and len(report.loaded) == len(original)
    assert report.remapped == name.startswith("srtg_")  # only the SR block (`sar`) is renamed
    with torch.no_grad():
        logits = model(clip)
    reference = torch.tensor(fixture["logits"])
    assert logits.shape == reference.shape
    diff = (logits - reference).abs().max().item()
    assert diff <= 1e-3 * max(1.0, fixture["logits_absmax"]), f"{name}: max abs diff {diff:.3g}"
