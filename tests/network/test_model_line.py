"""The 2026 model line (X3D, SlowFast, MViTv2-S, MC3): mixed precision, channels_last, clip sizes, published figures.

Parity with the reference code and the ecosystem key layouts are in ``test_ecosystem_parity.py``; forward and
backward of every name on a tiny clip in ``test_registry_sweep.py``.
"""

from __future__ import annotations

import pytest
import torch

from vidnet.network import create_model
from vidnet.network.cost import count_parameters, model_cost
from vidnet.network.profile import PUBLISHED_K400, profile_model
from vidnet.network.slowfast import slow_frames

# One name per code path: X3D (XS/S/M/L differ only in depth), SlowFast with alpha 8 and 4, MViTv2, MC3.
NAMES = ["x3d_xs", "slowfast_r50_4x16", "mvit_v2_s", "mc3_18"]
CLIP = (2, 3, 8, 32, 32)


def _clip() -> torch.Tensor:
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward_and_backward_on_cpu(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    x = _clip()
    with torch.no_grad():
        ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    cos = torch.nn.functional.cosine_similarity(out.float().flatten(), ref.flatten(), dim=0)
    assert cos > 0.98, f"{name}: bf16 logits drift from fp32 (cosine {cos:.4f})"
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_3d_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    x = _clip()
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        out = model(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * max(1.0, ref.abs().max().item()))


@pytest.mark.parametrize("name, clip", [("x3d_m", (5, 72, 96)), ("slowfast_r50_8x8", (12, 48, 80)),
                                        ("mvit_v2_s", (6, 96, 64))])
def test_any_clip_length_and_size(name, clip):
    """Global pooling (X3D, SlowFast) and resampled position tables (MViTv2) take clips other than training's."""
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *clip))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_slowfast_takes_a_clip_or_the_pathway_pair():
    model = create_model("slowfast_r50_8x8", num_classes=3).eval()
    x = _clip()
    idx = slow_frames(x.shape[2], 4)
    assert idx.tolist() == [0, 7]  # linspace(0, T - 1, T // alpha) rounded down, as the reference pipeline picks
    assert slow_frames(8, 4, "stride").tolist() == [0, 4]
    with torch.no_grad():
        assert torch.equal(model(x), model([x[:, :, idx], x]))
    for frames in (3, 9):  # the lateral connections need T = k * alpha
        with pytest.raises(ValueError, match="multiple of alpha=4"):
            model(torch.randn(1, 3, frames, 64, 64))


@pytest.mark.parametrize("name", sorted(PUBLISHED_K400))
def test_published_parameters_equal_ours_to_the_printed_digits(name):
    figures = PUBLISHED_K400[name]
    with torch.device("meta"):
        ours = count_parameters(create_model(name, num_classes=400))
    digits = len(f"{figures.params / 1e6:.6f}".rstrip("0").split(".")[1])  # as printed, in millions
    assert round(ours / 1e6, digits) == pytest.approx(figures.params / 1e6), name


@pytest.mark.parametrize("name", ["slowfast_r50_4x16", "slowfast_r50_8x8", "slowfast_r101_8x8", "mvit_v2_s", "mc3_18"])
def test_published_gflops_equal_our_macs_per_view(name):
    """FAIR's zoos and torchvision count a multiply-add as one FLOP: our MACs of one view are their GFLOPs
    (within 2 %; X3D's published figures also count its SE/swish elementwise work, which ours leave out)."""
    figures = PUBLISHED_K400[name]
    _, macs = model_cost(name, num_classes=400, clip=figures.clip)
    assert macs / 1e9 == pytest.approx(figures.gflops, rel=0.02)


def test_profile_row_carries_the_published_figures():
    r = profile_model("x3d_xs", clip=(4, 32, 32), repeats=1, warmup=0, backward=False)
    assert r.paper is PUBLISHED_K400["x3d_xs"] and r.params_400 == 3_794_322
    assert round(r.macs_paper_clip / 1e9, 3) == 0.839  # 4x182x182, the published view (0.91 with elementwise ops)
    assert r.to_dict()["paper"]["top1"] == 69.12
    plain = profile_model("r3d_18", clip=(4, 32, 32), repeats=1, warmup=0, backward=False)
    assert plain.paper is None and plain.macs_paper_clip is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_channels_last_forward_and_backward(name, dtype):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).cuda().to(memory_format=torch.channels_last_3d).train()
    x = _clip().cuda().contiguous(memory_format=torch.channels_last_3d)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    with torch.autocast("cuda", dtype=dtype):
        loss = model(x).float().logsumexp(1).sum()
    scaler.scale(loss).backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
