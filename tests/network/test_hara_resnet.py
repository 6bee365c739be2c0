"""Hara's 3D ResNets and C3D: exact parameter counts of the original code, parity, master-API options."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vidnet.errors import UsageError
from vidnet.network import create_model, list_models, model_info
from vidnet.network.hara_resnet import HaraResNet, ZeroPadShortcut
from vidnet.testing import load_parity_fixture, parity_clip, parity_state_dict


def n_params(name: str, num_classes: int, **options) -> int:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    return sum(p.numel() for p in model.parameters())


# Measured on okankop/Efficient-3DCNNs (the code of kenshohara/3D-ResNets-PyTorch's CVPR2018
# branch): params at 600 / 400 / 101 classes.
EFFICIENT_3DCNNS = [
    ("resnet10_3d", "A", (14_533_400, 14_430_800, 14_277_413)),
    ("resnet10_3d", "B", (14_707_224, 14_604_624, 14_451_237)),
    ("resnet18_3d", "A", (33_337_880, 33_235_280, 33_081_893)),
    ("resnet18_3d", "B", (33_511_704, 33_409_104, 33_255_717)),
    ("resnet34_3d", "A", (63_647_512, 63_544_912, 63_391_525)),
    ("resnet34_3d", "B", (63_821_336, 63_718_736, 63_565_349)),
    ("resnet50_3d", "A", (44_651_800, 44_242_000, 43_629_349)),
    ("resnet50_3d", "B", (47_428_376, 47_018_576, 46_405_925)),
    ("resnet101_3d", "A", (83_697_944, 83_288_144, 82_675_493)),
    ("resnet101_3d", "B", (86_474_520, 86_064_720, 85_452_069)),
    ("resnet152_3d", "A", (115_856_664, 115_446_864, 114_834_213)),
    ("resnet152_3d", "B", (118_633_240, 118_223_440, 117_610_789)),
    ("resnet200_3d", "A", (125_056_280, 124_646_480, 124_033_829)),
    ("resnet200_3d", "B", (127_832_856, 127_423_056, 126_810_405)),
    ("resnext50_3d", "A", (24_318_488, 23_908_688, 23_296_037)),
    ("resnext50_3d", "B", (27_095_064, 26_685_264, 26_072_613)),
    ("resnext101_3d", "A", (45_974_040, 45_564_240, 44_951_589)),
    ("resnext101_3d", "B", (48_750_616, 48_340_816, 47_728_165)),
    ("resnext152_3d", "A", (63_812_120, 63_402_320, 62_789_669)),
    ("resnext152_3d", "B", (66_588_696, 66_178_896, 65_566_245)),
]


@pytest.mark.parametrize(("name", "shortcut", "counts"), EFFICIENT_3DCNNS, ids=lambda v: str(v))
def test_counts_equal_efficient_3dcnns_and_cvpr2018(name, shortcut, counts):
    assert tuple(n_params(name, nc, shortcut=shortcut) for nc in (600, 400, 101)) == counts


# kenshohara/3D-ResNets-PyTorch, CVPR2018 branch: rows not covered above: params at 400 / 600 classes, shortcut B.
CVPR2018 = [
    ("preresnet18_3d", {}, (33_408_208, 33_510_808)),
    ("preresnet34_3d", {}, (63_717_840, 63_820_440)),
    ("preresnet50_3d", {}, (47_014_608, 47_424_408)),
    ("preresnet101_3d", {}, (86_060_752, 86_470_552)),
    ("preresnet152_3d", {}, (118_219_472, 118_629_272)),
    ("preresnet200_3d", {}, (127_419_088, 127_828_888)),
    ("wide_resnet50_3d", {}, (158_248_272, 158_658_072)),
]


@pytest.mark.parametrize(("name", "options", "counts"), CVPR2018, ids=lambda v: str(v))
def test_counts_equal_the_cvpr2018_branch(name, options, counts):
    assert tuple(n_params(name, nc, **options) for nc in (400, 600)) == counts


# kenshohara/3D-ResNets-PyTorch master (new API): params at 400 / 700 classes. Master's ResNeXt and WRN widen the
# stem to the first stage's width (stem_width=128); its ResNeXt/pre-activation rows are the "PATCHED" ones (the
# original's model.py cannot build them).
MASTER = [
    ("resnet10_3d", {}, (14_604_624, 14_758_524)),
    ("resnet18_3d", {}, (33_409_104, 33_563_004)),
    ("resnet34_3d", {}, (63_718_736, 63_872_636)),
    ("resnet50_3d", {}, (47_018_576, 47_633_276)),
    ("resnet101_3d", {}, (86_064_720, 86_679_420)),
    ("resnet152_3d", {}, (118_223_440, 118_838_140)),
    ("resnet200_3d", {}, (127_423_056, 128_037_756)),
    ("resnet10_3d", {"shortcut": "A"}, (14_430_800, 14_584_700)),
    ("resnet18_3d", {"shortcut": "A"}, (33_235_280, 33_389_180)),
    ("resnet34_3d", {"shortcut": "A"}, (63_544_912, 63_698_812)),
    ("wide_resnet50_3d", {"stem_width": 128}, (158_338_832, 158_953_532)),
    ("wide_resnet101_3d", {"stem_width": 128}, (296_558_352, 297_173_052)),
    ("wide_resnet152_3d", {"stem_width": 128}, (410_390_288, 411_004_988)),
    ("wide_resnet200_3d", {"stem_width": 128}, (442_928_912, 443_543_612)),
    ("resnext50_3d", {"stem_width": 128}, (26_775_824, 27_390_524)),
    ("resnext101_3d", {"stem_width": 128}, (48_431_376, 49_046_076)),
    ("resnext152_3d", {"stem_width": 128}, (66_269_456, 66_884_156)),
    ("resnet2p1d10_3d", {}, (14_608_044, 14_761_944)),
    ("resnet2p1d18_3d", {}, (33_421_164, 33_575_064)),
    ("resnet2p1d34_3d", {}, (63_747_500, 63_901_400)),
    ("resnet2p1d50_3d", {}, (47_035_382, 47_650_082)),
    ("resnet2p1d101_3d", {}, (86_101_110, 86_715_810)),
    ("resnet2p1d152_3d", {}, (118_277_110, 118_891_810)),
    ("resnet2p1d200_3d", {}, (127_485_942, 128_100_642)),
    ("preresnet18_3d", {}, (33_408_208, 33_562_108)),
    ("preresnet34_3d", {}, (63_717_840, 63_871_740)),
    ("preresnet50_3d", {}, (47_014_608, 47_629_308)),
    ("preresnet101_3d", {}, (86_060_752, 86_675_452)),
]


@pytest.mark.parametrize(("name", "options", "counts"), MASTER, ids=lambda v: str(v))
def test_counts_equal_master(name, options, counts):
    assert tuple(n_params(name, nc, **options) for nc in (400, 700)) == counts


# ResNetL-10 (ahmetgunduz/Real-time-GesRec, as in okankop/Efficient-3DCNNs) at 2 / 27 / 101 / 400 / 600 classes.
RESNETL = {
    "A": (902_450, 905_675, 915_221, 953_792, 979_592),
    "B": (913_650, 916_875, 926_421, 964_992, 990_792),
}


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnetl10_counts(shortcut):
    got = tuple(n_params("resnetl10_3d", nc, shortcut=shortcut) for nc in (2, 27, 101, 400, 600))
    assert got == RESNETL[shortcut]


def test_resnetl10_is_resnet10_at_a_quarter_width():
    # Master's widen_factor scales stem and stages alike; ResNetL-10 is exactly that at 0.25.
    assert n_params("resnet10_3d", 27, widen_factor=0.25, shortcut="A") == RESNETL["A"][1]


def test_fine_tuning_counts_of_the_published_recipes():
    # r3d50 (K700) -> 101 classes and r3d18 -> 101 classes (kenshohara/3D-ResNets-PyTorch
    # master); the course file's 224 model.
    assert n_params("resnet50_3d", 101) == 46_405_925
    assert n_params("resnet18_3d", 101) == 33_255_717


NAMES = {
    **{f"resnet{d}_3d": ("hara_resnet", str(d)) for d in (10, 18, 34, 50, 101, 152, 200)},
    **{f"resnet2p1d{d}_3d": ("hara_resnet2p1d", str(d)) for d in (10, 18, 34, 50, 101, 152, 200)},
    **{f"preresnet{d}_3d": ("hara_preresnet", str(d)) for d in (18, 34, 50, 101, 152, 200)},
    **{f"wide_resnet{d}_3d": ("hara_wide_resnet", str(d)) for d in (50, 101, 152, 200)},
    **{f"resnext{d}_3d": ("hara_resnext", str(d)) for d in (50, 101, 152)},
    "resnetl10_3d": ("resnetl", "10"),
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_are_pinned_to_family_and_depth(name):
    info = model_info(name)
    assert (info.family, info.depth) == NAMES[name]
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    n_blocks = sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    per_block = 2 if _basic(model) else 3
    assert n_blocks * per_block + 2 == int(info.depth)


def _basic(model: HaraResNet) -> bool:
    return not hasattr(model.layer1[0], "conv3")


def test_2plus1d_mid_channels_follow_the_original_formula():
    with torch.device("meta"):
        model = create_model("resnet2p1d18_3d", num_classes=10)
    # floor(3*64*7*49 / (3*49 + 7*64)) = 110 for the stem; floor(64*64*27 / (64*9 + 3*64)) = 144 in layer1.
    assert model.conv1_s.out_channels == 110 and model.conv1_t.kernel_size == (7, 1, 1)
    assert model.layer1[0].conv1_s.out_channels == 144 and model.layer2[0].conv1_t.stride == (2, 1, 1)


def test_family_lists_exactly_these_names():
    hara = [n for n in list_models() if model_info(n).family in {f for f, _ in NAMES.values()}]
    assert sorted(hara) == sorted(NAMES)


# FlopCounter GMACs at 1x3x16x112x112: okankop/Efficient-3DCNNs (600 classes, 4 decimals) and
# kenshohara/3D-ResNets-PyTorch master (400 classes, 3 decimals).
@pytest.mark.parametrize(
    ("name", "shortcut", "num_classes", "gmacs"),
    [("resnet18_3d", "A", 600, 8.2964), ("resnet50_3d", "B", 600, 10.0697), ("resnext101_3d", "B", 600, 9.5681),
     ("resnet10_3d", "A", 600, 5.6422), ("resnet2p1d18_3d", "B", 400, 8.477), ("resnet2p1d50_3d", "B", 400, 10.524)],
)
def test_macs_equal_the_original_code(name, shortcut, num_classes, gmacs):
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, shortcut=shortcut).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 16, 112, 112))
    tolerance = 6e-5 if num_classes == 600 else 6e-4
    assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, abs=tolerance)


@pytest.mark.parametrize(("fixture", "name", "shortcut"), [("hara_resnet18_A", "resnet18_3d", "A"),
                                                           ("hara_resnext101_B", "resnext101_3d", "B")])
def test_original_checkpoint_loads_and_logits_match(fixture, name, shortcut):
    fx = load_parity_fixture(fixture)
    model = create_model(name, num_classes=fx["num_classes"], shortcut=shortcut).eval()
    # Same key names as the original: no remap, every key and shape loads strictly.
    model.load_state_dict(parity_state_dict(fx), strict=True)
    with torch.no_grad():
        logits = model(parity_clip(tuple(fx["input_shape"])))
    diff = (logits - torch.tensor(fx["logits"])).abs().max().item()
    assert diff <= 1e-3 * max(1.0, fx["logits_absmax"])


def test_master_stem_options():
    with torch.device("meta"):
        base = create_model("resnet18_3d", num_classes=10)
        t3 = create_model("resnet18_3d", num_classes=10, conv1_t_size=3, conv1_t_stride=2, no_max_pool=True,
                          in_channels=2)
    assert tuple(t3.conv1.weight.shape) == (64, 2, 3, 7, 7)
    assert t3.conv1.stride == (2, 2, 2) and t3.conv1.padding == (1, 3, 3)
    assert isinstance(t3.maxpool, torch.nn.Identity)
    # Only the stem kernel differs: 64 * (3*7*7*3 - 2*3*7*7) weights.
    assert sum(p.numel() for p in base.parameters()) - sum(p.numel() for p in t3.parameters()) == 64 * 49 * 15
    x = torch.empty(1, 2, 16, 112, 112, device="meta")
    feats = t3.forward_features(x)
    assert tuple(feats.shape) == (1, 512, 1, 7, 7)  # no max-pool: spatial /16, temporal /16 from the stem stride


def test_shortcut_a_passes_the_gradient_through_the_identity():
    # The original detaches the zero-padded shortcut (out.data); ours must carry the gradient.
    sc = ZeroPadShortcut(8, 2)
    x = torch.randn(1, 4, 5, 7, 6, requires_grad=True)
    out = sc(x)
    assert out.shape == (1, 8, 3, 4, 3) and torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:]))
    out.sum().backward()
    assert x.grad[:, :, ::2, ::2, ::2].eq(1).all() and x.grad.sum() == out[:, :4].numel()


@pytest.mark.parametrize(("name", "options"), [("resnet10_3d", {"shortcut": "A"}), ("resnetl10_3d", {}),
                                               ("resnet2p1d10_3d", {"widen_factor": 0.25}),
                                               ("preresnet18_3d", {"widen_factor": 0.25}),
                                               ("resnext50_3d", {"widen_factor": 0.25, "cardinality": 8})])
def test_forward_backward_on_a_tiny_clip(name, options):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **options)
    x = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(NAMES))
@pytest.mark.parametrize("shape", [(1, 3, 1, 17, 23), (2, 3, 37, 64, 45)])
def test_any_clip_length_and_size(name, shape):
    # Shapes only, on the meta device (the heaviest models are 400M parameters); real forwards are above.
    with torch.device("meta"):
        model = create_model(name, num_classes=5).eval()
        assert tuple(model(torch.empty(*shape)).shape) == (shape[0], 5)


def test_small_resnet_runs_on_odd_shapes():
    model = create_model("resnetl10_3d", num_classes=5, shortcut="A").eval()
    with torch.no_grad():
        for shape in [(1, 3, 1, 17, 23), (1, 3, 7, 45, 31)]:
            assert model(torch.randn(*shape)).shape == (1, 5)


def test_bad_options_raise_usage_errors():
    with pytest.raises(UsageError, match="shortcut"):
        create_model("resnet18_3d", shortcut="C")
    with pytest.raises(UsageError, match="block"):
        HaraResNet(block="dense", layers=(1, 1, 1, 1))
    with pytest.raises(UsageError, match="depth"):
        create_model("resnet18_3d", model_depth=19)
