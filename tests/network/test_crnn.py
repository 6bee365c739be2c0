"""Simple 3D CNN and CRNN: counts measured on HHTseng/video-classification, original key layout, any clip size."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import VidnetError
from vidnet.network import create_model, list_models, model_info
from vidnet.network.crnn import CRNN, CNNEncoder, LSTMDecoder, ResNetEncoder, SimpleCNN3D, crnn
from vidnet.network.resnet2d import resnet2d


def _n(m: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


def _meta(fn, *args, **kw):
    with torch.device("meta"):
        return fn(*args, **kw)


def test_simple_cnn3d_counts():
    m = _meta(create_model, "simple_cnn3d", num_classes=101)  # script settings: 28 x 256 x 342, fc 256/256
    assert _n(m) == 320_117_237
    assert _n(m.fc1) == 319_979_776 and m.fc1.in_features == 48 * 5 * 62 * 84 == 1_249_920
    d = _meta(SimpleCNN3D, num_classes=50, t_dim=120, img_size=(90, 120), fc_hidden=(256, 128))  # class defaults
    assert _n(d) == 202_394_946


def test_crnn_counts():
    m = _meta(create_model, "crnn", num_classes=101)
    assert _n(m) == 81_434_213
    assert _n(m.encoder) == 74_973_184 and _n(m.encoder.fc1) == 73_401_344
    assert _n(m.decoder) == 6_461_029 and _n(m.decoder.LSTM) == 6_303_744
    assert _n(_meta(CNNEncoder, img_size=(90, 120), fc_hidden=(512, 512), embed_dim=300)) == 3_953_708
    assert _n(_meta(LSTMDecoder, num_classes=50, embed_dim=300, hidden=256, fc_dim=128)) == 1_663_410


def test_resnet152_crnn_counts():
    m = _meta(create_model, "crnn_resnet152", num_classes=101)
    assert _n(m) == 67_887_525
    assert _n(m.encoder.resnet) == 58_143_808
    assert _n(m.encoder) - _n(m.encoder.resnet) == 3_282_688
    assert _n(m, trainable=True) == 9_743_717  # encoder head + decoder: what the original optimiser covered
    head = _meta(ResNetEncoder, 152, fc_hidden=(512, 512), embed_dim=300)
    assert _n(head) - _n(head.resnet) == 1_467_692


def test_state_dict_keys_follow_the_original():
    cnn3d = set(_meta(SimpleCNN3D).state_dict())
    assert {k.split(".")[0] for k in cnn3d} == {"conv1", "bn1", "conv2", "bn2", "fc1", "fc2", "fc3"}
    keys = set(_meta(crnn).state_dict())
    for k in ("encoder.conv1.0.weight", "encoder.conv4.1.running_var", "encoder.fc3.bias",
              "decoder.LSTM.weight_ih_l2", "decoder.LSTM.bias_hh_l0", "decoder.fc2.weight"):  # fmt: skip
        assert k in keys
    keys = set(_meta(crnn, backbone=152).state_dict())
    for k in ("encoder.resnet.0.weight", "encoder.resnet.1.running_mean", "encoder.resnet.7.2.conv3.weight",
              "encoder.resnet.4.0.downsample.0.weight", "encoder.bn2.weight", "encoder.fc3.weight"):  # fmt: skip
        assert k in keys


def test_adaptive_pool_is_the_identity_at_the_configured_size():
    """At the size the classifier was built for, the model is the original's flatten-and-classify."""
    torch.manual_seed(0)
    m = SimpleCNN3D(num_classes=5, t_dim=13, img_size=(21, 25), fc_hidden=(16, 8)).eval()
    x = torch.randn(2, 1, 13, 21, 25)
    h = F.relu(m.bn1(m.conv1(x)))
    h = F.relu(m.bn2(m.conv2(h)))
    want = m.fc3(F.relu(m.fc2(F.relu(m.fc1(h.flatten(1))))))
    torch.testing.assert_close(m(x), want)

    enc = CNNEncoder(img_size=(40, 50), fc_hidden=(16, 8), embed_dim=4).eval()
    f = torch.randn(3, 3, 40, 50)
    h = enc.conv4(enc.conv3(enc.conv2(enc.conv1(f))))
    torch.testing.assert_close(enc(f), enc.fc3(F.relu(enc.fc2(F.relu(enc.fc1(h.flatten(1)))))))


def test_rgb_clips_are_converted_to_grayscale_like_the_original():
    torch.manual_seed(0)
    m = SimpleCNN3D(num_classes=3, t_dim=9, img_size=(12, 12), fc_hidden=(8, 8)).eval()
    rgb = torch.rand(2, 3, 9, 12, 12)
    gray = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1)
    torch.testing.assert_close(m(rgb), m(gray))
    with pytest.raises(VidnetError, match="input channels"):
        m(torch.rand(2, 2, 9, 12, 12))


def _small_crnn(**kw):
    return crnn(num_classes=5, img_size=(40, 48), fc_hidden=(16, 12), embed_dim=8, lstm_hidden=6, fc_dim=7, **kw)


def test_crnn_equals_the_original_per_time_step_loop():
    torch.manual_seed(0)
    m = _small_crnn().eval()
    x = torch.randn(2, 3, 4, 40, 48)
    emb = torch.stack([m.encoder(x[:, :, t]) for t in range(4)], dim=1)  # the original's loop over time
    out, _ = m.decoder.LSTM(emb)
    want = m.decoder.fc2(F.relu(m.decoder.fc1(out[:, -1])))
    torch.testing.assert_close(m(x), want)
    chunked = _small_crnn(frame_chunk=3).eval()
    chunked.load_state_dict(m.state_dict())
    torch.testing.assert_close(chunked(x), want)


def test_resnet_encoder_loads_torchvision_weights(tmp_path):
    torch.manual_seed(0)
    r = resnet2d(18).eval()
    torch.save(r.state_dict(), tmp_path / "resnet18.pth")
    m = crnn(num_classes=4, backbone=18, pretrained_2d=tmp_path / "resnet18.pth").eval()
    f = torch.randn(3, 3, 33, 29)
    torch.testing.assert_close(m.encoder.resnet(f).flatten(1), r.forward_features(f))
    with pytest.raises(VidnetError, match="not a torchvision ResNet"):
        m.encoder.load_resnet2d(resnet2d(34).state_dict())
    with pytest.raises(VidnetError, match="needs a ResNet backbone"):
        crnn(pretrained_2d=tmp_path / "resnet18.pth")


def test_resnet_crnn_trains_its_encoder_head_but_not_the_frozen_trunk():
    torch.manual_seed(0)
    m = create_model("crnn_resnet18", num_classes=4)
    m(torch.randn(2, 3, 3, 24, 24)).sum().backward()
    assert all(p.grad is None for p in m.encoder.resnet.parameters())
    # The original computed its encoder head under no_grad, so these never trained there.
    assert m.encoder.fc1.weight.grad is not None and m.encoder.fc1.weight.grad.abs().sum() > 0
    unfrozen = create_model("crnn_resnet18", num_classes=4, freeze_trunk=False)
    unfrozen(torch.randn(2, 3, 3, 24, 24)).sum().backward()
    assert unfrozen.encoder.resnet[0].weight.grad is not None


@pytest.mark.parametrize("shape", [(2, 3, 1, 7, 9), (2, 3, 5, 33, 35), (1, 3, 11, 40, 41)])
@pytest.mark.parametrize("which", ["cnn3d", "crnn", "crnn_resnet18"])
def test_any_clip_forward_backward(shape, which):
    torch.manual_seed(0)
    if which == "cnn3d":
        m = create_model("simple_cnn3d", num_classes=5, t_dim=9, img_size=(16, 20), fc_hidden=(8, 8))
    elif which == "crnn":
        m = _small_crnn()
    else:
        m = create_model("crnn_resnet18", num_classes=5, fc_hidden=(8, 8), embed_dim=8, lstm_hidden=8, fc_dim=8)
    out = m(torch.randn(*shape))
    assert out.shape == (shape[0], 5)
    out.sum().backward()
    head = m.fc3 if which == "cnn3d" else m.decoder.fc2
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_clip_layout_is_checked():
    with pytest.raises(VidnetError, match=r"\[B, C, T, H, W\]"):
        _small_crnn()(torch.randn(2, 3, 40, 48))


@pytest.mark.parametrize(
    ("name", "family", "depth", "cls"),
    [("simple_cnn3d", "cnn3d", "2", SimpleCNN3D), ("crnn", "crnn", "4", CRNN)]
    + [(f"crnn_resnet{d}", "crnn_resnet", str(d), CRNN) for d in (18, 34, 50, 101, 152)],
)
def test_registry_names(name, family, depth, cls):
    info = model_info(name)
    assert (info.name, info.family, info.depth) == (name, family, depth)
    m = _meta(create_model, name, num_classes=3)
    assert isinstance(m, cls)
    if name.startswith("crnn_resnet"):
        assert isinstance(m.encoder, ResNetEncoder) and len(m.encoder.resnet) == 9
        assert _n(m.encoder.resnet) == _n(_meta(resnet2d, int(depth))) - _n(_meta(resnet2d, int(depth)).fc)
    assert name in list_models("*")


def _gmacs(model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.empty(*shape, device="meta"))
    return counter.get_total_flops() / 2e9


# On meta tensors the LSTM decomposes into counted matmuls; by hand it is 28*3*4*512*1024 MACs.
LSTM_GMACS = 28 * 3 * 4 * 512 * 1024 / 1e9


@pytest.mark.parametrize(
    ("name", "shape", "gmacs"),
    [
        ("simple_cnn3d", (1, 1, 28, 256, 342), 2.422),
        ("crnn", (1, 3, 28, 256, 342), 11.058 + LSTM_GMACS),
        ("crnn_resnet152", (1, 3, 28, 224, 224), 322.42 + LSTM_GMACS),
    ],
)
def test_macs_equal_reference(name, shape, gmacs):
    got = _gmacs(_meta(create_model, name, num_classes=101), shape)
    assert got == pytest.approx(gmacs, abs=0.006)
