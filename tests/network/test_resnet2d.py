"""2D ResNets: torchvision's exact key layout and counts, weight files, frame classifier."""

import pytest
import torch
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network import create_model, list_models, model_info
from vidnet.network.resnet2d import (
    RESNET2D_LAYERS,
    FrameResNet,
    resnet2d,
    transfer_resnet2d_weights,
)
from vidnet.network.weights import read_state_dict

# torchvision's resnet18-152: params (1000 classes), params without fc, fc in, state-dict entries (without
# num_batches_tracked), parameter tensors.
ZOO_RESNET2D = {
    18: (11_689_512, 11_176_512, 512, 122, 102, 62),
    34: (21_797_672, 21_284_672, 512, 218, 182, 110),
    50: (25_557_032, 23_508_032, 2048, 320, 267, 161),
    101: (44_549_160, 42_500_160, 2048, 626, 522, 314),
    152: (60_192_808, 58_143_808, 2048, 932, 777, 467),
}


def _meta(depth: int, **kw):
    with torch.device("meta"):
        return resnet2d(depth, **kw)


def _torchvision_keys(depth: int) -> list[tuple[str, tuple[int, ...]]]:
    """torchvision's state-dict keys and shapes, written out from its documented naming rules."""
    bottleneck = depth >= 50
    blocks = RESNET2D_LAYERS[depth][1]
    exp = 4 if bottleneck else 1
    keys: list[tuple[str, tuple[int, ...]]] = []

    def bn(name, c):
        keys.extend([(f"{name}.weight", (c,)), (f"{name}.bias", (c,))])
        keys.extend([(f"{name}.running_mean", (c,)), (f"{name}.running_var", (c,))])
        keys.append((f"{name}.num_batches_tracked", ()))

    keys.append(("conv1.weight", (64, 3, 7, 7)))
    bn("bn1", 64)
    cin = 64
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            if bottleneck:
                keys.append((f"{p}.conv1.weight", (planes, cin, 1, 1)))
                bn(f"{p}.bn1", planes)
                keys.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
                bn(f"{p}.bn2", planes)
                keys.append((f"{p}.conv3.weight", (planes * 4, planes, 1, 1)))
                bn(f"{p}.bn3", planes * 4)
            else:
                keys.append((f"{p}.conv1.weight", (planes, cin, 3, 3)))
                bn(f"{p}.bn1", planes)
                keys.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
                bn(f"{p}.bn2", planes)
            if b == 0 and (s > 0 or bottleneck):
                keys.append((f"{p}.downsample.0.weight", (planes * exp, cin, 1, 1)))
                bn(f"{p}.downsample.1", planes * exp)
            cin = planes * exp
    keys += [("fc.weight", (1000, cin)), ("fc.bias", (1000,))]
    return keys


@pytest.mark.parametrize("depth", sorted(ZOO_RESNET2D))
def test_counts_equal_torchvision(depth):
    params, no_fc, fc_in, entries, entries_no_nbt, tensors = ZOO_RESNET2D[depth]
    m = _meta(depth)
    sd = m.state_dict()
    assert sum(p.numel() for p in m.parameters()) == params
    assert sum(p.numel() for n, p in m.named_parameters() if not n.startswith("fc.")) == no_fc
    assert m.num_features == m.fc.in_features == fc_in
    assert len(sd) == entries
    assert len([k for k in sd if not k.endswith("num_batches_tracked")]) == entries_no_nbt
    assert len(list(m.parameters())) == tensors


@pytest.mark.parametrize("depth", sorted(ZOO_RESNET2D))
def test_key_layout_is_torchvision(depth):
    got = [(k, tuple(v.shape)) for k, v in _meta(depth).state_dict().items()]
    assert got == _torchvision_keys(depth)


def test_bottleneck_stride_sits_on_the_3x3_conv():
    m = _meta(50)
    assert m.layer2[0].conv2.stride == (2, 2) and m.layer2[0].conv1.stride == (1, 1)
    assert m.layer1[0].downsample is not None  # even layer1 projects in Bottleneck nets
    assert _meta(18).layer1[0].downsample is None


def _filled(depth: int, num_classes: int = 1000, seed: int = 0):
    torch.manual_seed(seed)
    m = resnet2d(depth, num_classes=num_classes)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m.eval()


def test_old_torchvision_file_loads_without_num_batches_tracked(tmp_path):
    src = _filled(18)
    old = {"module." + k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "resnet18-old.pth")
    dst = resnet2d(18).eval()
    report = transfer_resnet2d_weights(dst, tmp_path / "resnet18-old.pth")
    assert report.skipped == {}
    assert all(k.endswith("num_batches_tracked") for k in report.missing)
    x = torch.randn(2, 3, 45, 37)
    torch.testing.assert_close(dst(x), src(x))


def test_imagenet_classifier_is_skipped_for_a_new_class_count():
    dst = resnet2d(18, num_classes=7)
    report = transfer_resnet2d_weights(dst, {"state_dict": _filled(18).state_dict()})
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert "shape (1000, 512)" in report.skipped["fc.weight"]


@pytest.mark.parametrize(("src_depth", "dst_depth"), [(34, 18), (18, 34), (18, 50)])
def test_wrong_depth_file_raises_and_loads_nothing(src_depth, dst_depth):
    dst = resnet2d(dst_depth)
    before = dst.conv1.weight.clone()
    with pytest.raises(VidnetError, match="not a torchvision ResNet"):
        transfer_resnet2d_weights(dst, _filled(src_depth).state_dict())
    assert torch.equal(dst.conv1.weight, before)


def test_weight_file_is_read_without_executing_pickles(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(VidnetError, match="evil.pth"):
        read_state_dict(tmp_path / "evil.pth")
    with pytest.raises(VidnetError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


def test_frame_classifier_averages_frame_log_probabilities():
    depth = 18
    src = _filled(depth, num_classes=5)
    frame = FrameResNet(*RESNET2D_LAYERS[depth], num_classes=5).eval()
    frame.load_state_dict(src.state_dict())  # identical layout: a torchvision file loads as is
    x = torch.randn(2, 3, 3, 29, 31)
    want = torch.stack([F.log_softmax(src(x[:, :, t]), dim=1) for t in range(3)], 1).mean(1)
    torch.testing.assert_close(frame(x), want)
    # Summing the log-probabilities (the course's video score) ranks classes the same way.
    assert torch.equal(frame(x).argmax(1), (want * 3).argmax(1))
    chunked = FrameResNet(*RESNET2D_LAYERS[depth], num_classes=5, frame_chunk=2).eval()
    chunked.load_state_dict(src.state_dict())
    torch.testing.assert_close(chunked(x), want)


@pytest.mark.parametrize("shape", [(1, 3, 2, 9, 8), (2, 3, 5, 17, 23)])
def test_frame_classifier_any_clip_forward_backward(shape):
    model = create_model("frame_resnet18", num_classes=4)
    assert model.eval()(torch.randn(1, 3, 1, 5, 5)).shape == (1, 4)  # one tiny frame works in eval mode
    # (training BatchNorm needs more than one value per channel, hence >= 2 frames at this size)
    out = model.train()(torch.randn(*shape))
    assert out.shape == (shape[0], 4)
    out.sum().backward()
    assert model.conv1.weight.grad is not None and torch.isfinite(model.conv1.weight.grad).all()


@pytest.mark.parametrize("depth", sorted(ZOO_RESNET2D))
def test_frame_classifier_registry_names(depth):
    info = model_info(f"frame_resnet{depth}")
    assert (info.family, info.depth) == ("frame2d", str(depth))
    with torch.device("meta"):
        m = create_model(f"frame_resnet{depth}", num_classes=101)
    params, no_fc, fc_in = ZOO_RESNET2D[depth][:3]
    assert isinstance(m, FrameResNet)
    assert sum(p.numel() for p in m.parameters()) == no_fc + fc_in * 101 + 101
    assert list_models("frame_resnet*") == sorted(f"frame_resnet{d}" for d in ZOO_RESNET2D)


@pytest.mark.parametrize(("depth", "gmacs"), [(18, 1.814), (34, 3.664), (50, 4.089), (101, 7.801), (152, 11.514)])
def test_macs_at_224_equal_reference(depth, gmacs):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = create_model(f"frame_resnet{depth}", num_classes=1000).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.empty(1, 3, 1, 224, 224, device="meta"))
    assert round(counter.get_total_flops() / 2e9, 3) == gmacs
