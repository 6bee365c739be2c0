"""SRTG's Squeeze-and-Recursion layer and temporal cycle-consistency gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vidnet.network import create_model
from vidnet.network.layers.squeeze_recursion import SqueezeRecursion
from vidnet.network.layers.temporal_gate import TemporalCycleGate, cycle_consistent


def _seq(*frames: float) -> torch.Tensor:
    return torch.tensor(frames, dtype=torch.float32).view(1, 1, -1)  # B=1, C=1, T


def test_identical_sequences_are_consistent():
    a = torch.randn(3, 8, 6)
    assert cycle_consistent(a, a.clone()).tolist() == [True, True, True]


def test_reversed_sequence_is_inconsistent_both_ways():
    a = _seq(0, 10, 20, 30)
    assert not cycle_consistent(a, a.flip(-1)).item()


def test_one_direction_is_enough():
    a, b = _seq(0, 10, 20, 30), _seq(0, 10, 20, 24)
    # a -> b matches 0,1,2,3; b -> a sends frame 3 (24) to frame 2 (20): consistent in one direction only.
    fwd = (torch.cdist(a.transpose(1, 2), b.transpose(1, 2)).argmin(2) == torch.arange(4)).all().item()
    bwd = (torch.cdist(b.transpose(1, 2), a.transpose(1, 2)).argmin(2) == torch.arange(4)).all().item()
    assert (fwd, bwd) == (True, False)
    assert cycle_consistent(a, b).item() and cycle_consistent(b, a).item()


def test_gate_is_per_sample_and_leaves_inputs_alone():
    a = torch.cat([_seq(0, 10, 20, 30), _seq(0, 10, 20, 30)])
    b = torch.cat([_seq(1, 11, 21, 31), _seq(30, 20, 10, 0)])
    a0, b0 = a.clone(), b.clone()
    assert cycle_consistent(a, b).tolist() == [True, False]
    assert torch.equal(a, a0) and torch.equal(b, b0)  # the original scattered into its inputs


class _FixedGate(nn.Module):
    def __init__(self, mask: list[bool]) -> None:
        super().__init__()
        self.mask = torch.tensor(mask)

    def forward(self, features, recurrent):
        return self.mask


def test_sr_fuses_only_accepted_samples():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 5, 5)
    plain = SqueezeRecursion(4)
    gated = SqueezeRecursion(4, gate=_FixedGate([True, False]))
    gated.load_state_dict(plain.state_dict())
    fused = plain(x)
    out = gated(x)
    assert torch.equal(out[0], fused[0])
    assert torch.equal(out[1], x[1])
    assert not torch.allclose(fused[1], x[1])


@pytest.mark.parametrize("shape", [(2, 4, 3, 1, 5), (2, 4, 3, 5, 1), (2, 4, 3, 1, 1)])
def test_sr_squeezes_any_spatial_size(shape):
    # The original only pooled when H > 1 and W > 1 and crashed on H = 1, W > 1.
    assert SqueezeRecursion(4, gate=TemporalCycleGate())(torch.randn(*shape)).shape == shape


def test_srtg_names_gate_by_default_as_the_paper_describes():
    model = create_model("srtg_r3d_18", num_classes=3)
    srs = [m for m in model.modules() if isinstance(m, SqueezeRecursion)]
    assert len(srs) == 8 and all(isinstance(m.gate, TemporalCycleGate) for m in srs)
    ungated = create_model("srtg_r3d_18", num_classes=3, gates=False)
    assert all(m.gate is None for m in ungated.modules() if isinstance(m, SqueezeRecursion))
    with pytest.raises(ValueError, match="recursion"):
        create_model("r3d_18", num_classes=3, gates=True)


def test_gates_change_the_output():
    torch.manual_seed(0)
    gated = create_model("srtg_r3d_18", num_classes=5).eval()
    ungated = create_model("srtg_r3d_18", num_classes=5, gates=False).eval()
    ungated.load_state_dict(gated.state_dict())
    plain = create_model("r3d_18", num_classes=5).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if ".sr." not in k})
    decisions = []
    for m in gated.modules():
        if isinstance(m, TemporalCycleGate):
            m.register_forward_hook(lambda mod, i, o: decisions.extend(o.tolist()))
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        y_gated, y_ungated, y_plain = gated(x), ungated(x), plain(x)
    assert True in decisions and False in decisions
    # (relative: SR at initialisation shrinks activations by orders of magnitude)
    assert not torch.allclose(y_gated, y_ungated, rtol=1e-3, atol=0)
    # The original's gate returned all zeros, so a gated SRTG equalled the plain backbone.
    assert not torch.allclose(y_gated, y_plain, rtol=1e-3, atol=0)


def test_gated_model_trains():
    model = create_model("srtg_r2plus1d_18", num_classes=3)
    out = model(torch.randn(2, 3, 4, 32, 32))
    out.sum().backward()
    assert model.fc.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
