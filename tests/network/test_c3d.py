"""C3D (Efficient-3DCNNs variant): exact counts and MACs of the original code, original keys, any clip shape."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vidnet.network import create_model, model_info


def n_params(num_classes: int, **options) -> int:
    with torch.device("meta"):
        model = create_model("c3d", num_classes=num_classes, **options)
    return sum(p.numel() for p in model.parameters())


def test_counts_equal_the_original_code():
    # Measured on okankop/Efficient-3DCNNs (models/c3d.py) at 600 / 400 / 101 classes.
    assert (n_params(600), n_params(400), n_params(101)) == (80_459_480, 79_640_080, 78_415_077)
    assert model_info("c3d").family == "c3d" and "1412.0767" in model_info("c3d").paper


def test_pool_size_reproduces_the_original_fc1_for_other_training_shapes():
    # The original sizes fc1 as 512 * floor(T/16) * ceil(S/32)^2: 32 frames at 112 -> 512*2*4*4 inputs.
    extra = 512 * 16 * 4096
    assert n_params(600, pool_size=(2, 4, 4)) - n_params(600) == extra


def test_macs_equal_the_original_code():
    with torch.device("meta"):
        model = create_model("c3d", num_classes=600).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 16, 112, 112))
    assert counter.get_total_flops() / 2e9 == pytest.approx(33.0004, abs=6e-5)


def test_original_key_layout():
    keys = create_model("c3d", num_classes=10).state_dict().keys()
    for k in ("group1.0.weight", "group1.1.running_var", "group3.3.weight", "group5.4.bias", "fc1.0.weight",
              "fc2.0.bias", "fc.0.weight"):
        assert k in keys
    assert not any(k.startswith("pool") for k in keys)


def test_head_is_the_original_flatten_at_the_training_shape():
    with torch.device("meta"):
        model = create_model("c3d", num_classes=10).eval()
        feats = model.forward_features(torch.empty(1, 3, 16, 112, 112))
    assert tuple(feats.shape) == (1, 512, 1, 4, 4)  # so the adaptive pool is an identity there


@pytest.mark.parametrize("shape", [(1, 3, 1, 7, 9), (1, 3, 5, 33, 17), (1, 3, 12, 40, 56)])
def test_any_clip_length_and_size(shape):
    # The original needs >= 16 frames (2x2x2 pools) and exactly its training size (fc1 input).
    model = create_model("c3d", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(*shape)).shape == (1, 5)


def test_forward_backward_on_a_tiny_clip():
    torch.manual_seed(0)
    model = create_model("c3d", num_classes=7)
    x = torch.randn(2, 3, 4, 16, 16, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())
