"""``vidnet train --pretrained-3d`` goes through the one weight door: checkpoints in the original code's key
layouts (SRTG/MTNet, Kensho Hara's 3D ResNets, Efficient-3DCNNs) load every tensor."""

from __future__ import annotations

import pytest
import torch

from vidnet.network import create_model
from vidnet.network.weights import load_weights
from vidnet.testing import load_parity_fixture, parity_state_dict
from vidnet.train.loop import _load_pretrained

# parity fixture -> (registered network, builder options as the original constructors built it)
LAYOUTS = {
    "r3d_18": ("r3d_18", {}), "r2plus1d_18": ("r2plus1d_18", {}), "ir_csn_50": ("ir_csn_50", {}),
    "ip_csn_50": ("ip_csn_50", {}), "srtg_r3d_18": ("srtg_r3d_18", {"gates": False}),
    "srtg_r2plus1d_18": ("srtg_r2plus1d_18", {"gates": False}), "srtg_r3d_50": ("srtg_r3d_50", {"gates": False}),
    "mtnet_xs": ("MTNet_xs", {"legacy": True}), "hara_resnet18_A": ("resnet18_3d", {"shortcut": "A"}),
    "hara_resnext101_B": ("resnext101_3d", {"shortcut": "B"}), "e3d_mobilenet_1.0x": ("mobilenet_3d", {}),
    "e3d_mobilenetv2_1.0x": ("mobilenetv2_3d", {}), "e3d_shufflenet_g3_1.0x": ("shufflenet_3d", {}),
    "e3d_shufflenetv2_1.0x": ("shufflenetv2_3d", {}), "e3d_squeezenet_1.1": ("squeezenet1_1_3d", {}),
}


def _original_file(fixture: str, path):
    """A checkpoint as the original code saved it: ``{'state_dict': {'module.<original key>': tensor}}``."""
    fx = load_parity_fixture(fixture)
    torch.save({"state_dict": {f"module.{k}": v for k, v in parity_state_dict(fx).items()}, "epoch": 30}, path)
    return fx, path


@pytest.mark.parametrize("fixture", sorted(LAYOUTS))
def test_every_parity_layout_loads_every_tensor(fixture, tmp_path):
    fx, path = _original_file(fixture, tmp_path / "original.pth")
    name, options = LAYOUTS[fixture]
    model = create_model(name, num_classes=fx["num_classes"], **options)
    report = _load_pretrained(model, str(path))
    assert report.missing == [] and report.skipped == {}, report.summary()


@pytest.mark.slow
def test_cli_pretrained_3d_of_an_original_srtg_checkpoint_fills_the_sr_lstms(frozen_pretrained_weights, tmp_path):
    # Formerly only names that matched as they were loaded: the 64 SR LSTM tensors of the original layout
    # (renamed in vidnet) kept their initial values.
    fx, path = _original_file("srtg_r3d_18", tmp_path / "srtg.pth")
    reference = create_model("srtg_r3d_18", num_classes=fx["num_classes"])
    expected = {k: v for k, v in reference.state_dict().items()
                if k in load_weights(reference, path).loaded and not k.startswith("fc.")}
    lstm = [k for k in expected if "lstm" in k.lower()]
    assert len(lstm) == 64
    trained = frozen_pretrained_weights("srtg_r3d_18", path, clip_size=16)
    for key in lstm:
        torch.testing.assert_close(trained[key], expected[key], rtol=0, atol=1e-6, msg=key)
