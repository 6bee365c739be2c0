"""Every registered model: forward and backward on a tiny clip, and every name pinned to family and depth.

Sweeps ``list_models()`` at test time, so models added later are covered too. A model may declare the
smallest clip it accepts as a ``min_input = (T, H, W)`` attribute (class or instance); otherwise
``DEFAULT_CLIP`` is used. The batch is 2 so that batch norm has two values per channel even where a
stage's feature map is a single voxel.
"""

from __future__ import annotations

import re

import pytest
import torch

from vidnet.network import create_model, list_models, model_info
from vidnet.network.layers.squeeze_recursion import SqueezeRecursion

DEFAULT_CLIP = (4, 32, 32)
NUM_CLASSES = 3


def _heavy(name: str) -> bool:
    """Depth >= 101 or more than 50 M parameters (counted on the meta device, without real weights)."""
    depth = model_info(name).depth
    if depth.isdigit() and int(depth) >= 101:
        return True
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=NUM_CLASSES)
    except Exception:  # a model that cannot build on meta is judged by its depth alone
        return False
    return sum(p.numel() for p in model.parameters()) > 50_000_000


NAMES = [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n for n in list_models()]


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_tiny_clip(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES)
    model.train()
    t, h, w = getattr(model, "min_input", DEFAULT_CLIP)
    out = model(torch.randn(2, 3, t, h, w))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _name_claims_depth(name: str, depth: str) -> bool:
    """A depth in the name must be the recorded one (r3d_50 -> 50); a width multiplier is written in
    hundredths (mobilenet_3d_050 -> 0.5x, the bare name is 1.0x); fixed architectures (c3d, crnn, tiny_3d)
    carry no number in their name, and record their depth for information."""
    if depth.endswith("x"):
        depth = depth.rsplit("_", 1)[-1]  # ShuffleNet's "g3_1.0x": groups are an option, not in the name
        width = round(float(depth[:-1]) * 100)
        suffix = re.search(r"_(\d{3})$", name)
        return int(suffix.group(1)) == width if suffix else width == 100
    if _alnum(depth) in _alnum(name):
        return True
    return not re.search(r"\d", re.sub(r"2plus1d|[23]d", "", name))


@pytest.mark.parametrize("name", list_models())
def test_name_is_pinned_to_family_and_depth(name):
    """The registry records what each name claims; an SRTG name (and only one) builds SR layers."""
    info = model_info(name)
    assert info.name == name and info.family and info.depth
    assert _name_claims_depth(name, info.depth), (name, info.depth)
    assert name.startswith("srtg_") == info.family.startswith("srtg_")
    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES)
    has_sr = any(isinstance(m, SqueezeRecursion) for m in model.modules())
    assert has_sr == name.startswith("srtg_")


def test_srtg_r3d_50_is_not_a_plain_r3d_50():
    with torch.device("meta"):
        srtg, plain = create_model("srtg_r3d_50"), create_model("r3d_50")
    assert sum(isinstance(m, SqueezeRecursion) for m in srtg.modules()) == 16
    assert not any(isinstance(m, SqueezeRecursion) for m in plain.modules())
