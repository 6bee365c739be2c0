"""MiCT-ResNet: counts and shapes measured on fmahoudeau/MiCT-Net-PyTorch, cross-domain structure, 2D init."""

import pytest
import torch
import torch.nn as nn

from vidnet.errors import VidnetError
from vidnet.network import create_model, model_info
from vidnet.network.mict import MiCTResNet, mict_resnet
from vidnet.network.resnet2d import resnet2d

# fmahoudeau/MiCT-Net-PyTorch (101 classes, 7x7x7 first kernel) and its README's
# 3x7x7 / 5x7x7 rows (deltas -37,632 / -18,816).
ZOO_MICT = {
    (18, 7): 16_051_685,
    (18, 5): 16_051_685 - 18_816,
    (18, 3): 16_051_685 - 37_632,
    (34, 7): 26_159_845,
    (34, 5): 26_159_845 - 18_816,
    (34, 3): 26_159_845 - 37_632,
}
TRUNK_2D = {18: 11_176_512, 34: 21_284_672}  # torchvision ResNet without fc
BRANCH_3D = 4_823_360  # the five 3D convolutions and their BatchNorms (7x7x7 stem)


def _meta(depth, **kw):
    with torch.device("meta"):
        return mict_resnet(depth, **kw)


def _is_3d(name: str) -> bool:
    return name.startswith(("conv2.", "bn2.")) or name.split(".")[1] in ("conv", "bn")


@pytest.mark.parametrize(("depth", "kt"), sorted(ZOO_MICT))
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_parameter_counts_equal_reference(depth, kt, version):
    m = _meta(depth, first_kernel_t=kt, version=version)
    assert sum(p.numel() for p in m.parameters()) == ZOO_MICT[(depth, kt)]
    assert m.conv2.weight.shape == (64, 3, kt, 7, 7)


@pytest.mark.parametrize("depth", [18, 34])
def test_parameter_decomposition(depth):
    m = _meta(depth)
    named = dict(m.named_parameters())
    three_d = sum(p.numel() for n, p in named.items() if _is_3d(n))
    fc = sum(p.numel() for n, p in named.items() if n.startswith("fc."))
    assert three_d == BRANCH_3D
    assert fc == 512 * 101 + 101
    assert sum(p.numel() for p in named.values()) - three_d - fc == TRUNK_2D[depth]
    assert sum(isinstance(mod, nn.Conv3d) for mod in m.modules()) == 5


def test_state_dict_keys_follow_the_original_layout():
    keys = list(_meta(18).state_dict())
    tops = {k.split(".")[0] for k in keys}
    assert tops == {"conv1", "bn1", "conv2", "bn2", "layer1", "layer2", "layer3", "layer4", "fc"}
    for k in ("layer1.bottlenecks.0.conv1.weight", "layer2.bottlenecks.0.downsample.0.weight",
              "layer2.bottlenecks.0.downsample.1.running_var", "layer3.conv.weight", "layer4.bn.bias"):  # fmt: skip
        assert k in keys
    # torchvision's layer1 has no projection in BasicBlock nets
    assert not any(k.startswith("layer1.bottlenecks.0.downsample") for k in keys)


@pytest.mark.parametrize(
    ("version", "want"),
    [
        ("v1", [(64, 8, 40, 40), (128, 4, 20, 20), (256, 2, 10, 10), (512, 1, 5, 5)]),
        ("v2", [(64, 8, 40, 40), (128, 8, 20, 20), (256, 4, 10, 10), (512, 4, 5, 5)]),
    ],
)
def test_stage_shapes_at_16x160x160(version, want):
    m = _meta(18, version=version)
    seen = []
    for i in range(1, 5):
        getattr(m, f"layer{i}").register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[1:])))
    out = m(torch.empty(1, 3, 16, 160, 160, device="meta"))
    assert seen == want and out.shape == (1, 101)


def _torchvision_r18(num_classes=101):
    torch.manual_seed(0)
    r = resnet2d(18, num_classes=num_classes)
    with torch.no_grad():
        for mod in r.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return r.eval()


@pytest.mark.parametrize(("version", "frame_step"), [("v1", 16), ("v2", 4)])
def test_without_the_3d_branch_mict_is_the_2d_resnet_on_strided_frames(tmp_path, version, frame_step):
    r = _torchvision_r18()
    torch.save(r.state_dict(), tmp_path / "resnet18.pth")
    m = mict_resnet(18, version=version, first_kernel_t=3, pretrained_2d=tmp_path / "resnet18.pth").eval()
    m.fc.load_state_dict(r.fc.state_dict())
    with torch.no_grad():  # silence the five 3D convolutions: their BN outputs zero
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm3d):
                mod.weight.zero_()
                mod.bias.zero_()
    x = torch.randn(2, 3, 9, 25, 23)
    frames = x[:, :, ::frame_step]  # the 2D path subsamples time by the product of the temporal strides
    want = torch.stack([r(frames[:, :, t]) for t in range(frames.shape[2])], 1).mean(1)
    torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-4)


def test_the_3d_branch_contributes():
    torch.manual_seed(0)
    m = mict_resnet(18, first_kernel_t=3, num_classes=5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    before = m(x)
    with torch.no_grad():
        m.layer4.conv.weight.mul_(3)
    assert not torch.allclose(before, m(x))


def test_load_resnet2d_maps_layers_into_bottlenecks_and_skips_fc():
    r = _torchvision_r18(num_classes=1000)
    m = mict_resnet(18, first_kernel_t=3)
    report = m.load_resnet2d(r.state_dict())
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert torch.equal(m.layer3.bottlenecks[1].conv2.weight, r.layer3[1].conv2.weight)
    assert torch.equal(m.layer2.bottlenecks[0].downsample[1].running_var, r.layer2[0].downsample[1].running_var)
    assert not any(_is_3d(k) for k in report.loaded)
    with pytest.raises(VidnetError, match="not a torchvision ResNet"):
        mict_resnet(34, first_kernel_t=3).load_resnet2d(r.state_dict())  # an 18 file cannot fill a 34


@pytest.mark.parametrize(
    ("shape", "kt", "version"),
    [
        ((2, 3, 1, 17, 19), 7, "v1"),  # T=1 runs with a 7-frame first kernel
        ((2, 3, 2, 9, 8), 3, "v2"),  # training BatchNorm needs > 1 value per channel: batch 2 at 1x1x1
        ((2, 3, 5, 21, 27), 5, "v1"),
        ((1, 3, 11, 40, 24), 3, "v2"),
    ],
)
def test_any_clip_forward_backward(shape, kt, version):
    torch.manual_seed(0)
    m = create_model("mict_resnet18", num_classes=6, first_kernel_t=kt, version=version)
    out = m(torch.randn(*shape))
    assert out.shape == (shape[0], 6)
    out.sum().backward()
    for p in (m.conv2.weight, m.layer4.conv.weight, m.layer1.bottlenecks[0].conv1.weight, m.fc.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_bad_options_are_clear_errors():
    with pytest.raises(VidnetError, match="first_kernel_t"):
        mict_resnet(18, first_kernel_t=4)
    with pytest.raises(VidnetError, match="version"):
        mict_resnet(18, version="v3")
    with pytest.raises(VidnetError, match="depth 50"):
        mict_resnet(50)


@pytest.mark.parametrize("depth", [18, 34])
def test_registry_names(depth):
    info = model_info(f"mict_resnet{depth}")
    assert (info.name, info.family, info.depth) == (f"mict_resnet{depth}", "mict", str(depth))
    assert model_info(f"MiCTResNet{depth}").name == f"mict_resnet{depth}"
    with torch.device("meta"):
        m = create_model(f"mict_resnet{depth}", num_classes=400)
    assert isinstance(m, MiCTResNet)
    assert sum(p.numel() for p in m.parameters()) == ZOO_MICT[(depth, 7)] + 513 * (400 - 101)


def _gmacs(model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.empty(*shape, device="meta"))
    return counter.get_total_flops() / 2e9


@pytest.mark.parametrize(
    ("depth", "version", "size", "gmacs"),
    [
        (18, "v1", 160, 12.616),
        (18, "v2", 160, 15.300),
        (34, "v1", 160, 15.565),
        (34, "v2", 160, 20.490),
        (18, "v1", 112, 6.226),
        (18, "v2", 112, 7.676),
    ],  # fmt: skip
)
def test_macs_equal_reference(depth, version, size, gmacs):
    assert round(_gmacs(_meta(depth, version=version), (1, 3, 16, size, size)), 3) == gmacs


def test_inflate_3d_starts_each_3d_conv_as_its_2d_neighbour():
    from vidnet.network.inflate import inflate_weight

    r = _torchvision_r18(num_classes=1000)
    m = mict_resnet(18, first_kernel_t=5)
    report = m.load_resnet2d(r.state_dict(), inflate_3d=True)
    torch.testing.assert_close(m.conv2.weight, inflate_weight(r.conv1.weight, 5))
    assert torch.equal(m.bn2.running_var, r.bn1.running_var)
    for i in range(1, 5):
        stage, block = getattr(m, f"layer{i}"), getattr(r, f"layer{i}")[0]
        torch.testing.assert_close(stage.conv.weight, inflate_weight(block.conv1.weight, 3))
        assert torch.equal(stage.bn.bias, block.bn1.bias)
    assert [k for k in report.missing if not k.endswith("num_batches_tracked")] == ["fc.weight", "fc.bias"]
    with pytest.raises(VidnetError, match="inflate_3d needs pretrained_2d"):
        mict_resnet(18, inflate_3d=True)
