"""Inflation of 2D weights into 3D kernels preserves a 2D network's output on a clip of identical frames."""

import pytest
import torch
import torch.nn as nn

from vidnet.errors import VidnetError
from vidnet.network.inflate import (
    TemporalPadConv3d,
    inflate_module,
    inflate_state_dict,
    inflate_weight,
    load_inflated,
)
from vidnet.network.resnet2d import resnet2d


def _randomise_bn(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def _static(images: torch.Tensor, t: int) -> torch.Tensor:
    return images.unsqueeze(2).expand(-1, -1, t, -1, -1).contiguous()


@pytest.mark.parametrize("t", [1, 3, 7])
def test_inflate_weight_repeats_and_divides(t):
    w = torch.randn(4, 2, 3, 5)
    w3 = inflate_weight(w, t)
    assert w3.shape == (4, 2, t, 3, 5)
    for i in range(t):
        torch.testing.assert_close(w3[:, :, i], w / t)
    torch.testing.assert_close(w3.sum(2), w)
    c = inflate_weight(w, t, mode="center")
    torch.testing.assert_close(c.sum(2), w)
    assert torch.equal(c[:, :, t // 2], w)


def test_inflate_weight_rejects_bad_input():
    with pytest.raises(VidnetError, match="4-D"):
        inflate_weight(torch.randn(4, 2, 3), 3)
    with pytest.raises(VidnetError, match="time_size"):
        inflate_weight(torch.randn(4, 2, 3, 3), 0)


class _Net2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(-2, -1)))


class _Net3d(nn.Module):
    """The hand-written 3D twin: same names, temporal kernels t1/t2 without temporal padding."""

    def __init__(self, t1, t2):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, (t1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2))
        self.bn1 = nn.BatchNorm3d(8)
        self.conv2 = nn.Conv3d(8, 6, (t2, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(-3, -2, -1)))


@pytest.mark.parametrize(("t1", "t2"), [(1, 1), (3, 3), (5, 2)])
def test_inflated_twin_matches_2d_on_identical_frames(t1, t2):
    torch.manual_seed(0)
    net2d = _randomise_bn(_Net2d()).eval()
    net3d = _Net3d(t1, t2).eval()
    report = load_inflated(net3d, net2d.state_dict(), strict=True)
    assert report.skipped == {} and report.missing == []
    x = torch.randn(2, 3, 19, 23)
    torch.testing.assert_close(net3d(_static(x, t1 + t2 + 2)), net2d(x))
    # and the test has teeth: a moving clip does not give the 2D answer
    moving = _static(x, t1 + t2 + 2) + torch.randn(2, 3, t1 + t2 + 2, 19, 23)
    assert not torch.allclose(net3d(moving), net2d(x), atol=1e-3)


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return _randomise_bn(resnet2d(18, num_classes=6))


@pytest.fixture(scope="module")
def r18_3d(r18):
    return inflate_module(r18)


@pytest.mark.parametrize(("t", "train"), [(1, False), (5, False), (4, True)])
def test_inflated_resnet18_equals_2d_on_static_clips(r18, r18_3d, t, train):
    net2d, net3d = r18.train(train), r18_3d.train(train)
    x = torch.randn(2, 3, 29, 33)
    # in training mode too: BatchNorm statistics of T identical frames are those of one frame
    torch.testing.assert_close(net3d(_static(x, t)), net2d(x), rtol=1e-4, atol=1e-4)


def test_inflated_resnet_keys_equal_torchvision_keys_with_5d_kernels(r18, r18_3d):
    net2d, net3d = r18, r18_3d
    sd2, sd3 = net2d.state_dict(), net3d.state_dict()
    assert list(sd2) == list(sd3)
    assert sd3["conv1.weight"].shape == (64, 3, 7, 7, 7)  # MiCT/kensho 3D-ResNet: 7x7 -> 7x7x7
    assert sd3["layer1.0.conv1.weight"].shape == (64, 64, 3, 3, 3)
    assert sd3["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    torch.testing.assert_close(sd3["layer2.0.downsample.0.weight"][:, :, 0], sd2["layer2.0.downsample.0.weight"])
    torch.testing.assert_close(sd3["conv1.weight"][:, :, 3], sd2["conv1.weight"] / 7)
    assert isinstance(net3d.conv1, TemporalPadConv3d) and net3d.conv1.time_pad == (3, 3)
    assert isinstance(net2d.conv1, nn.Conv2d)  # the original is untouched


def test_zero_padding_dims_the_clip_edges(r18):
    net2d = r18.eval()
    zeros = inflate_module(net2d, time_kernel=3, time_padding="zeros").eval()
    x = torch.randn(1, 3, 24, 24)
    assert not torch.allclose(zeros(_static(x, 2)), net2d(x), atol=1e-3)
    assert zeros.conv1.weight.shape[2] == 3 and zeros.layer1[0].conv1.weight.shape[2] == 3


def test_load_inflated_from_a_torchvision_file_reports_what_it_skipped(tmp_path, r18):
    src = r18
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "r18.pth")
    with torch.device("meta"):
        target = inflate_module(resnet2d(18, num_classes=5))
    target = target.to_empty(device="cpu")
    report = load_inflated(target, tmp_path / "r18.pth", strict=True)
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert "does not inflate" in report.skipped["fc.weight"]  # 6 classes into 5
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    torch.testing.assert_close(target.layer3[1].conv2.weight, inflate_weight(src.layer3[1].conv2.weight, 3))


def test_strict_inflation_refuses_an_incomplete_source(r18, r18_3d):
    target = r18_3d
    partial = {k: v for k, v in r18.state_dict().items() if not k.startswith("layer4")}
    with pytest.raises(VidnetError, match="layer4"):
        load_inflated(target, partial, strict=True)
    new, report = inflate_state_dict(partial, target)
    assert "layer4.0.conv1.weight" in report.missing and "layer3.0.conv1.weight" in new


def test_key_map_renames_into_another_layout():
    net2d = _Net2d()
    target = {"stem.weight": torch.empty(8, 3, 3, 5, 5)}
    new, report = inflate_state_dict(
        net2d.state_dict(), target, key_map=lambda k: "stem.weight" if k == "conv1.weight" else None
    )
    assert list(new) == ["stem.weight"] and new["stem.weight"].shape == (8, 3, 3, 5, 5)
    assert "conv2.weight" in report.skipped
