"""Efficient 3D CNNs: exact parameter counts of the original code, parity with its logits, any clip shape."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vidnet.errors import UsageError
from vidnet.network import create_model, list_models, model_info
from vidnet.network.efficient3d import shufflenet_widths
from vidnet.testing import load_parity_fixture, parity_clip, parity_state_dict


def n_params(name: str, num_classes: int, **options) -> int:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    return sum(p.numel() for p in model.parameters())


# Measured on okankop/Efficient-3DCNNs at 9db09f6: params at 600 / 400 / 101 classes.
COUNTS = [
    ("squeezenet1_0_3d", {}, (2_239_768, 2_137_168, 1_983_781)),
    ("squeezenet1_1_3d", {}, (2_145_560, 2_042_960, 1_889_573)),
    ("mobilenet_3d", {"width_mult": 0.25}, (390_024, 338_624, 261_781)),
    ("mobilenet_3d", {"width_mult": 0.5}, (1_171_896, 1_069_296, 915_909)),
    ("mobilenet_3d", {"width_mult": 1.0}, (3_912_984, 3_707_984, 3_401_509)),
    ("mobilenet_3d", {"width_mult": 1.5}, (8_223_864, 7_916_464, 7_456_901)),
    ("mobilenet_3d", {"width_mult": 2.0}, (14_104_536, 13_694_736, 13_082_085)),
    ("mobilenetv2_3d", {"width_mult": 0.2}, (964_110, 707_910, 324_891)),
    ("mobilenetv2_3d", {"width_mult": 0.25}, (1_037_456, 781_256, 398_237)),
    ("mobilenetv2_3d", {"width_mult": 0.45}, (1_399_834, 1_143_634, 760_615)),
    ("mobilenetv2_3d", {"width_mult": 0.5}, (1_518_136, 1_261_936, 878_917)),
    ("mobilenetv2_3d", {"width_mult": 0.7}, (2_049_942, 1_793_742, 1_410_723)),
    ("mobilenetv2_3d", {"width_mult": 1.0}, (3_122_648, 2_866_448, 2_483_429)),
    ("mobilenetv2_3d", {"width_mult": 1.5}, (6_277_176, 5_892_976, 5_318_597)),
    ("mobilenetv2_3d", {"width_mult": 2.0}, (10_494_040, 9_981_840, 9_216_101)),
    ("shufflenet_3d", {"groups": 1, "width_mult": 0.25}, (154_211, 125_811, 83_353)),
    ("shufflenet_3d", {"groups": 1, "width_mult": 0.5}, (421_426, 364_626, 279_710)),
    ("shufflenet_3d", {"groups": 1, "width_mult": 1.0}, (1_298_937, 1_185_337, 1_015_505)),
    ("shufflenet_3d", {"groups": 1, "width_mult": 1.5}, (2_630_316, 2_460_116, 2_205_667)),
    ("shufflenet_3d", {"groups": 1, "width_mult": 2.0}, (4_419_250, 4_192_250, 3_852_885)),
    ("shufflenet_3d", {"groups": 2, "width_mult": 1.0}, (1_447_144, 1_286_944, 1_047_445)),
    ("shufflenet_3d", {"groups": 2, "width_mult": 2.0}, (4_682_488, 4_362_288, 3_883_589)),
    ("shufflenet_3d", {"groups": 3, "width_mult": 0.25}, (219_486, 171_286, 99_227)),
    ("shufflenet_3d", {"groups": 3, "width_mult": 0.5}, (545_772, 449_572, 305_753)),
    ("shufflenet_3d", {"groups": 3, "width_mult": 1.0}, (1_521_504, 1_329_304, 1_041_965)),
    ("shufflenet_3d", {"groups": 3, "width_mult": 1.5}, (2_924_916, 2_636_716, 2_205_857)),
    ("shufflenet_3d", {"groups": 3, "width_mult": 2.0}, (4_758_888, 4_374_688, 3_800_309)),
    ("shufflenet_3d", {"groups": 4, "width_mult": 1.0}, (1_578_104, 1_360_304, 1_034_693)),
    ("shufflenet_3d", {"groups": 4, "width_mult": 2.0}, (4_808_552, 4_373_152, 3_722_229)),
    ("shufflenet_3d", {"groups": 8, "width_mult": 1.0}, (1_883_472, 1_576_072, 1_116_509)),
    ("shufflenet_3d", {"groups": 8, "width_mult": 2.0}, (5_411_976, 4_797_376, 3_878_549)),
    ("shufflenetv2_3d", {"width_mult": 0.25}, (829_656, 624_656, 318_181)),
    ("shufflenetv2_3d", {"width_mult": 0.5}, (976_664, 771_664, 465_189)),
    ("shufflenetv2_3d", {"width_mult": 1.0}, (1_914_180, 1_709_180, 1_402_705)),
    ("shufflenetv2_3d", {"width_mult": 1.5}, (3_161_880, 2_956_880, 2_650_405)),
    ("shufflenetv2_3d", {"width_mult": 2.0}, (6_639_816, 6_230_016, 5_617_365)),
]


@pytest.mark.parametrize(("name", "options", "counts"), COUNTS, ids=lambda v: str(v))
def test_parameter_counts_equal_the_original_code(name, options, counts):
    got = tuple(n_params(name, nc, **options) for nc in (600, 400, 101))
    assert got == counts


# The explicit names of the paper's Table 8 configurations (600 classes), pinned to family and width.
NAMED = {
    "mobilenet_3d": 3_912_984, "mobilenet_3d_050": 1_171_896, "mobilenet_3d_150": 8_223_864,
    "mobilenet_3d_200": 14_104_536,
    "mobilenetv2_3d": 3_122_648, "mobilenetv2_3d_020": 964_110, "mobilenetv2_3d_045": 1_399_834,
    "mobilenetv2_3d_070": 2_049_942,
    "shufflenet_3d": 1_521_504, "shufflenet_3d_050": 545_772, "shufflenet_3d_150": 2_924_916,
    "shufflenet_3d_200": 4_758_888,
    "shufflenetv2_3d": 1_914_180, "shufflenetv2_3d_025": 829_656, "shufflenetv2_3d_150": 3_161_880,
    "shufflenetv2_3d_200": 6_639_816,
    "squeezenet1_0_3d": 2_239_768, "squeezenet1_1_3d": 2_145_560,
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_registered_names_build_what_they_claim(name):
    info = model_info(name)
    assert info.family == "efficient3d" and "1904.02422" in info.paper
    assert n_params(name, 600) == NAMED[name]
    width = info.defaults.get("width_mult", 1.0)
    if "version" not in info.defaults:
        assert info.depth.endswith(f"{width}x")


def test_family_is_exactly_the_listed_names():
    names = [n for n in list_models() if model_info(n).family == "efficient3d"]
    assert sorted(names) == sorted(NAMED)


# FlopCounter multiply-accumulates at 1x3x16x112x112, 600 classes (measured on
# okankop/Efficient-3DCNNs), counted on the meta device.
@pytest.mark.parametrize(
    ("name", "options", "gmacs"),
    [("squeezenet1_0_3d", {}, 5.6419), ("squeezenet1_1_3d", {}, 0.9026), ("mobilenet_3d", {}, 0.2330),
     ("mobilenetv2_3d", {"width_mult": 0.2}, 0.0549), ("shufflenet_3d", {"groups": 8}, 0.1955),
     ("shufflenetv2_3d", {"width_mult": 2.0}, 0.4249)],
)
def test_macs_equal_the_original_code(name, options, gmacs):
    with torch.device("meta"):
        model = create_model(name, num_classes=600, **options).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 16, 112, 112))
    assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, abs=6e-5)


# Configurations the original cannot build: pinned to the rounded widths documented in shufflenet_widths.
ROUNDED = {
    (2, 0.25): (6, (50, 104, 200), 195_958), (2, 0.5): (12, (104, 200, 400), 500_684),
    (2, 1.5): (36, (304, 600, 1200), 2_843_028), (4, 0.25): (8, (80, 144, 272), 243_568),
    (4, 0.5): (12, (144, 272, 544), 583_092), (4, 1.5): (36, (416, 816, 1632), 2_988_972),
    (8, 0.25): (8, (96, 192, 384), 316_320), (8, 0.5): (16, (192, 384, 768), 735_144),
    (8, 1.5): (40, (576, 1152, 2304), 3_440_832),
}


@pytest.mark.parametrize(("groups", "width"), sorted(ROUNDED))
def test_shufflenet_widths_the_original_cannot_build_are_rounded_to_the_groups(groups, width):
    stem, stages, count = ROUNDED[(groups, width)]
    assert shufflenet_widths(groups, width) == (stem, stages)
    assert stem % groups == 0 and all(c % groups == 0 and (c // 4) % groups == 0 for c in stages)
    assert n_params("shufflenet_3d", 600, groups=groups, width_mult=width) == count


def test_shufflenet_rounding_leaves_buildable_widths_alone():
    # int(c * w) everywhere, including groups 1's odd 567 and its ungrouped 24-channel stem.
    assert shufflenet_widths(1, 1.0) == (24, (144, 288, 567))
    assert shufflenet_widths(3, 0.25) == (6, (60, 120, 240))
    assert shufflenet_widths(8, 2.0) == (48, (768, 1536, 3072))


def test_bad_options_raise_usage_errors():
    with pytest.raises(UsageError, match="groups"):
        create_model("shufflenet_3d", groups=5)
    with pytest.raises(UsageError, match="width_mult"):
        create_model("shufflenetv2_3d", width_mult=0.7)
    with pytest.raises(UsageError, match="version"):
        create_model("squeezenet1_1_3d", version="2.0")
    with pytest.raises(UsageError, match="width_mult"):
        create_model("mobilenet_3d", width_mult=0)
    with pytest.raises(UsageError, match="width_mult"):
        create_model("mobilenetv2_3d", width_mult=0.05)  # int(16 * 0.05) = 0 channels


PARITY = [
    ("e3d_mobilenet_1.0x", "mobilenet_3d"),
    ("e3d_mobilenetv2_1.0x", "mobilenetv2_3d"),
    ("e3d_shufflenet_g3_1.0x", "shufflenet_3d"),
    ("e3d_shufflenetv2_1.0x", "shufflenetv2_3d"),
    ("e3d_squeezenet_1.1", "squeezenet1_1_3d"),
]


@pytest.mark.parametrize(("fixture", "name"), PARITY)
def test_original_checkpoint_loads_and_logits_match(fixture, name):
    fx = load_parity_fixture(fixture)
    model = create_model(name, num_classes=fx["num_classes"]).eval()
    sd = parity_state_dict(fx)
    if hasattr(model, "remap_original_state_dict"):
        sd = model.remap_original_state_dict(sd)
    model.load_state_dict(sd, strict=True)  # every original key, with its shape, and nothing else
    with torch.no_grad():
        logits = model(parity_clip(tuple(fx["input_shape"])))
    diff = (logits - torch.tensor(fx["logits"])).abs().max().item()
    assert diff <= 1e-3 * max(1.0, fx["logits_absmax"])


def test_shufflenetv2_remap_renames_only_the_branch_typo():
    model = create_model("shufflenetv2_3d", num_classes=10)
    sd = {"features.0.banch1.0.weight": 1, "features.3.banch2.4.weight": 2, "conv1.0.weight": 3}
    assert model.remap_original_state_dict(sd) == {
        "features.0.branch1.0.weight": 1, "features.3.branch2.4.weight": 2, "conv1.0.weight": 3,
    }


SMALL = ["squeezenet1_0_3d", "squeezenet1_1_3d", "mobilenet_3d_050", "mobilenetv2_3d_020", "shufflenet_3d_050",
         "shufflenetv2_3d_025"]


@pytest.mark.parametrize("name", SMALL)
def test_forward_backward_on_a_tiny_clip(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", SMALL + ["shufflenet_3d"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 17, 23), (1, 3, 5, 33, 45), (1, 3, 9, 64, 48), (1, 3, 18, 40, 56)])
def test_any_clip_length_and_size(name, shape):
    # The originals' fixed pools and ShuffleNet's stride-2 shortcut fail on most of these shapes.
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(*shape)).shape == (1, 5)


def test_shufflenet_odd_temporal_shortcut_repeats_the_last_frame():
    model = create_model("shufflenet_3d", num_classes=5).eval()
    unit = model.layer1[0]
    x = torch.randn(1, 24, 5, 8, 8)
    pooled = unit.shortcut(x)
    padded = torch.cat([x, x[:, :, -1:]], dim=2)
    expected = torch.nn.functional.avg_pool3d(padded, (2, 3, 3), stride=2, padding=(0, 1, 1))
    assert pooled.shape[2] == 3
    torch.testing.assert_close(pooled, expected)
