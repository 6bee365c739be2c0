"""Video ResNet trunk: exact parameter counts against the reference table, shapes, options and structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vidnet.network import create_model, model_info
from vidnet.network.layers.conv_makers import Conv2Plus1D, Conv3DDepthwise, Conv3DSimple, IPConv3DDepthwise
from vidnet.network.layers.residual_blocks import BasicBlock, Bottleneck
from vidnet.network.layers.squeeze_recursion import SqueezeRecursion
from vidnet.network.resnet3d import DEPTHS, VideoResNet

# name, params (400 classes), params (101 classes), SR LSTM params, measured on
# the original SRTG code (alexandrosstergiou/Squeeze-and-Recursion-Temporal-Gates).
REFERENCE_COUNTS = [
    ("r3d_18", 33_371_472, 33_218_085, 0),
    ("r3d_34", 63_681_104, 63_527_717, 0),
    ("r3d_50", 36_724_688, 36_571_301, 0),
    ("r3d_101", 69_060_048, 68_906_661, 0),
    ("r3d_152", 95_690_704, 95_537_317, 0),
    ("r3d_200", 103_305_168, 103_151_781, 0),
    ("r3dxt34_32d", 63_681_104, 63_527_717, 0),
    ("r3dxt50_32x4d", 140_937_936, 140_784_549, 0),
    ("r3dxt101_32x8d", 1_043_362_512, 1_043_209_125, 0),
    ("wide_r3d50_2", 140_937_936, 140_784_549, 0),
    ("wide_r3d101_2", 265_762_000, 265_608_613, 0),
    ("ir_csn_50", 2_874_896, 2_721_509, 0),
    ("ir_csn_101", 5_246_736, 5_093_349, 0),
    ("ir_csn_152", 7_208_464, 7_055_077, 0),
    ("ip_csn_50", 4_139_920, 3_986_533, 0),
    ("ip_csn_101", 7_634_576, 7_481_189, 0),
    ("ip_csn_152", 10_521_488, 10_368_101, 0),
    ("srtg_r3d_18", 44_543_312, 44_389_925, 11_171_840),
    ("srtg_r3d_34", 83_861_072, 83_707_685, 20_179_968),
    ("srtg_r3d_50", 56_904_656, 56_751_269, 20_179_968),
    ("srtg_r3d_101", 107_135_440, 106_982_053, 38_075_392),
    ("srtg_r3d_152", 148_507_600, 148_354_213, 52_816_896),
    ("srtg_r3d_200", 160_349_136, 160_195_749, 57_043_968),
    ("srtg_r3dxt34_32d", 83_861_072, 83_707_685, 20_179_968),
    ("srtg_r3dxt50_32x4d", 161_117_904, 160_964_517, 20_179_968),
    ("srtg_r3dxt101_32x8d", 1_081_437_904, 1_081_284_517, 38_075_392),
    ("srtg_wide_r3d50_2", 161_117_904, 160_964_517, 20_179_968),
    ("srtg_wide_r3d101_2", 303_837_392, 303_684_005, 38_075_392),
    ("srtg_ir_csn_50", 23_054_864, 22_901_477, 20_179_968),
    ("srtg_ir_csn_101", 43_322_128, 43_168_741, 38_075_392),
    ("srtg_ir_csn_152", 60_025_360, 59_871_973, 52_816_896),
    ("srtg_ip_csn_50", 24_319_888, 24_166_501, 20_179_968),
    ("srtg_ip_csn_101", 45_709_968, 45_556_581, 38_075_392),
    ("srtg_ip_csn_152", 63_338_384, 63_184_997, 52_816_896),
    ("r2plus1d_18", 31_505_325, 31_351_938, 0),
    ("r2plus1d_34", 61_831_661, 61_678_274, 0),
    ("r2plus1d_50", 34_863_287, 34_709_900, 0),
    ("r2plus1d_101", 67_218_231, 67_064_844, 0),
    ("r2plus1d_152", 93_866_167, 93_712_780, 0),
    ("r2plus1d_200", 101_489_847, 101_336_460, 0),
    ("r2plus1dxt34_32d", 61_831_661, 61_678_274, 0),
    ("r2plus1dxt50_32x4d", 133_092_993, 132_939_606, 0),
    ("r2plus1dxt101_32x8d", 1_013_214_977, 1_013_061_590, 0),
    ("wide_r2plus1d50_2", 133_498_605, 133_345_218, 0),
    ("wide_r2plus1d101_2", 258_361_837, 258_208_450, 0),
    ("srtg_r2plus1d_18", 42_677_165, 42_523_778, 11_171_840),
    ("srtg_r2plus1d_34", 82_011_629, 81_858_242, 20_179_968),
    ("srtg_r2plus1d_50", 55_043_255, 54_889_868, 20_179_968),
    ("srtg_r2plus1d_101", 105_293_623, 105_140_236, 38_075_392),
    ("srtg_r2plus1d_152", 146_683_063, 146_529_676, 52_816_896),
    ("srtg_r2plus1d_200", 158_533_815, 158_380_428, 57_043_968),
    ("srtg_r2plus1dxt34_32d", 82_011_629, 81_858_242, 20_179_968),
    ("srtg_r2plus1dxt50_32x4d", 153_272_961, 153_119_574, 20_179_968),
    ("srtg_r2plus1dxt101_32x8d", 1_051_290_369, 1_051_136_982, 38_075_392),
    ("srtg_wide_r2plus1d50_2", 153_678_573, 153_525_186, 20_179_968),
    ("srtg_wide_r2plus1d101_2", 296_437_229, 296_283_842, 38_075_392),
]

XT = {"xt34_32d": (32, 4), "xt50_32x4d": (32, 4), "xt101_32x8d": (32, 8)}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(name: str, num_classes: int, **options) -> nn.Module:
    with torch.device("meta"):  # shapes only: counting a 1 B-parameter model costs nothing
        return create_model(name, num_classes=num_classes, **options)


def _is_xt(name: str) -> bool:
    return any(name.endswith(s) for s in XT)


@pytest.mark.parametrize("name,p400,p101,rnn", REFERENCE_COUNTS, ids=[r[0] for r in REFERENCE_COUNTS])
def test_parameter_count_matches_reference(name, p400, p101, rnn):
    # The *xt* names default to real grouped ResNeXts; grouped_conv=False is the original's dense version,
    # which is what the reference measured. gates add no parameters.
    opts = {"grouped_conv": False} if _is_xt(name) else {}
    m400 = _meta_model(name, 400, **opts)
    assert _count(m400) == p400
    assert _count(_meta_model(name, 101, **opts)) == p101
    lstm = sum(p.numel() for m in m400.modules() if isinstance(m, nn.LSTM) for p in m.parameters())
    assert lstm == rnn


def _formula(name: str, num_classes: int) -> int:
    """Independent parameter formula of the original srtg_resnet.py with the groups applied to the convolutions."""
    base = name.removeprefix("srtg_")
    conv = next(c for c in ("r2plus1d", "ir_csn", "ip_csn", "r3d") if c in base)
    depth = int(base.split("_")[-1] if conv in ("ir_csn", "ip_csn") or "xt" not in base and "wide" not in base
                else base.removeprefix("wide_").removeprefix(conv).removeprefix("xt").split("_")[0])
    groups, wpg = next((v for s, v in XT.items() if base.endswith(s)), (1, 128 if "wide" in base else 64))
    layers = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3],
              200: [3, 24, 36, 3]}[depth]

    def mid(i, o):
        return i * o * 27 // (9 * i + 3 * o)

    def maker(i, o, m, g):
        if conv == "r3d":
            return i * o * 27 // g
        if conv == "r2plus1d":
            return i * m * 9 // g + 2 * m + m * o * 3 // g
        if conv == "ir_csn":
            return o * 27
        return i * o + 2 * o + o * 27  # ip_csn

    total = 3 * 45 * 49 + 2 * 45 + 45 * 64 * 3 + 2 * 64 if conv == "r2plus1d" else 3 * 64 * 147 + 2 * 64
    inp = 64
    for s, (p, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        for b in range(n):
            if b == 0 and s > 0:
                total += inp * p + 2 * p
            if depth <= 34:
                w, m = (p, mid(inp, p)) if (groups, wpg) == (1, 64) else (
                    int(p * wpg / 64) * groups, int(mid(inp, p) * wpg / 64) * groups)
                total += maker(inp, w, m, groups) + 2 * w + maker(w, p, m, groups) + 2 * p
            else:
                w, m = int(p * wpg / 64) * groups, int(mid(inp, p) * wpg / 64) * groups
                total += inp * w + 2 * w + maker(w, w, m, groups) + 2 * w + w * p + 2 * p
            if name.startswith("srtg_"):
                total += 16 * p * p + 16 * p
            inp = p
    return total + 512 * num_classes + num_classes


def test_formula_reproduces_every_dense_reference_count():
    # Validates the independent formula on all 56 measured counts before it is trusted for the grouped models.
    # (The xt names are left out: there the original's groups never reached the convolution.)
    for name, p400, p101, _ in REFERENCE_COUNTS:
        if not _is_xt(name):
            assert _formula(name, 400) == p400, name
            assert _formula(name, 101) == p101, name


@pytest.mark.parametrize("name", [r[0] for r in REFERENCE_COUNTS if _is_xt(r[0])])
def test_resnext_names_are_grouped(name):
    model = _meta_model(name, 400)
    assert _count(model) == _formula(name, 400)
    assert _count(_meta_model(name, 101)) == _formula(name, 101)
    block = model.layer1[0]
    convs = [m for m in block.conv2.modules() if isinstance(m, nn.Conv3d)] if isinstance(block, Bottleneck) else \
        [m for m in block.conv1.modules() if isinstance(m, nn.Conv3d)]
    assert all(c.groups == 32 for c in convs)
    dense = next(r[1] for r in REFERENCE_COUNTS if r[0] == name)
    assert _count(model) < dense  # far smaller than the original's dense "ResNeXt"


@pytest.mark.parametrize("size,expected", [
    ((16, 112, 112), [(16, 56, 56), (8, 28, 28), (8, 28, 28), (4, 14, 14), (2, 7, 7), (1, 4, 4)]),
    ((16, 224, 224), [(16, 112, 112), (8, 56, 56), (8, 56, 56), (4, 28, 28), (2, 14, 14), (1, 7, 7)]),
])
@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_50", "ip_csn_50"])
def test_stage_shapes_match_reference(name, size, expected):
    model = _meta_model(name, 10)
    x = torch.empty(1, 3, *size, device="meta")
    shapes = []
    for stage in (model.stem, model.pool, model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        shapes.append(tuple(x.shape[2:]))
    assert shapes == expected
    assert x.shape[1] == 512


@pytest.mark.parametrize("t,h,w", [(1, 16, 16), (5, 33, 47), (32, 64, 64)])
def test_any_clip_length_and_size(t, h, w):
    model = create_model("srtg_r3d_18", num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, t, h, w)).shape == (2, 7)


def test_long_clip_in_one_pass():
    model = create_model("r2plus1d_18", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 300, 16, 16)).shape == (1, 5)


@pytest.mark.parametrize("place", ["start", "top", "mid", "end", "skip", "final"])
@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_every_sr_place_is_sized_and_applied(place, block):
    # inplanes != planes != inner width: the original sized start/top LSTMs wrongly, never ran `skip` and
    # never passed `place` at all.
    kw = {"conv_maker": Conv3DSimple, "stride": 2, "width_per_group": 128,
          "downsample": nn.Sequential(nn.Conv3d(8, 16, 1, stride=2, bias=False), nn.BatchNorm3d(16)),
          "sr_layer": SqueezeRecursion, "sr_place": place}
    if place == "end" and block is BasicBlock:
        with pytest.raises(ValueError, match="no SR place 'end'"):
            block(8, 16, **kw)
        return
    blk = block(8, 16, **kw).eval()
    expected = {"start": 8, "top": 32, "mid": 32 if block is Bottleneck else 16}.get(place, 16)
    assert blk.sr.lstm.input_size == expected
    seen = []
    blk.sr.register_forward_hook(lambda mod, i, o: seen.append(i[0].shape[1]))
    with torch.no_grad():
        assert blk(torch.randn(2, 8, 4, 8, 8)).shape == (2, 16, 2, 4, 4)
    assert seen == [expected]


def test_sr_place_reaches_every_block():
    model = create_model("srtg_r3d_18", num_classes=3, sr_place="top", gates=False)
    assert all(b.sr_place == "top" for i in range(1, 5) for b in getattr(model, f"layer{i}"))


def test_zero_init_residual_makes_blocks_identity():
    model = create_model("r3d_50", num_classes=3, zero_init_residual=True).eval()
    block = model.layer1[1]
    x = torch.rand(1, 64, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


FAMILY_CONV = {"r3d": Conv3DSimple, "r2plus1d": Conv2Plus1D, "ir_csn": Conv3DDepthwise, "ip_csn": IPConv3DDepthwise}


EXPECTED_FAMILY = {
    **{f"{c}_{d}": c for c in ("r3d", "r2plus1d") for d in (18, 34, 50, 101, 152, 200)},
    **{f"{c}{x}": f"{c}xt" for c in ("r3d", "r2plus1d") for x in XT},
    **{f"wide_{c}{d}_2": f"wide_{c}" for c in ("r3d", "r2plus1d") for d in (50, 101)},
    **{f"{c}_{d}": c for c in ("ir_csn", "ip_csn") for d in (50, 101, 152)},
}


@pytest.mark.parametrize("name", [r[0] for r in REFERENCE_COUNTS])
def test_name_builds_what_it_claims(name):
    """No substring dispatch: every name has its own family, depth, conv maker and (only srtg_) SR layers."""
    info = model_info(name)
    base = name.removeprefix("srtg_")
    family = info.family.removeprefix("srtg_")
    assert info.family.startswith("srtg_") == name.startswith("srtg_")
    assert family == EXPECTED_FAMILY[base]
    depth = int(info.depth)
    assert str(depth) in base
    model = _meta_model(name, 4)
    assert isinstance(model, VideoResNet)
    block_type, layers = DEPTHS[depth]
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == list(layers)
    assert all(isinstance(b, block_type) for i in range(1, 5) for b in getattr(model, f"layer{i}"))
    conv = family.removeprefix("wide_").removesuffix("xt")
    assert all(isinstance(b.conv2[0] if block_type is Bottleneck else b.conv1[0], FAMILY_CONV[conv])
               for b in model.layer2)
    n_sr = sum(isinstance(m, SqueezeRecursion) for m in model.modules())
    assert n_sr == (sum(layers) if name.startswith("srtg_") else 0)
    if name.startswith("srtg_"):
        assert all(m.gate is not None for m in model.modules() if isinstance(m, SqueezeRecursion))
    if "wide" in name:
        assert model.layer1[0].conv1[0].out_channels == 128


def test_unknown_depth_and_conv_are_rejected():
    from vidnet.network.resnet3d import video_resnet

    with pytest.raises(ValueError, match="model_depth"):
        video_resnet(model_depth=42)
    with pytest.raises(ValueError, match="conv family"):
        video_resnet(conv="r4d")


def test_aliases_reach_the_same_model():
    assert model_info("ircsn_152").name == "ir_csn_152"
    assert model_info("SRTG_IPCSN_50").name == "srtg_ip_csn_50"
    assert model_info("SRTG_R3D_50").name == "srtg_r3d_50"
