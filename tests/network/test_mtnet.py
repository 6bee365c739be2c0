import pytest
import torch
import torch.nn.functional as F

from vidnet.network import create_model, list_models, model_info
from vidnet.network import mtnet as mtnet_module
from vidnet.network.mtnet import MTBlock, MTConv, MTNet, frame_select_pool
from vidnet.testing import load_parity_fixture, parity_clip, parity_state_dict

# Measured on the original MTNet code (alexandrosstergiou/Squeeze-and-Recursion-Temporal-Gates, network/MTnet.py):
# (params at 400 classes, params at 101 classes, GRU params), measured on the original code.
COUNTS = {
    "mtnet_xs": (21_835_664, 21_682_277, 6_551_040),
    "mtnet_s": (39_981_968, 39_828_581, 10_867_200),
    "mtnet_m": (44_038_288, 43_884_901, 11_834_112),
    "mtnet_l": (88_132_752, 87_979_365, 22_331_136),
    "mtnet_xl": (124_450_960, 124_297_573, 30_978_816),
    "mtnet_xxl": (134_846_608, 134_693_221, 33_460_992),
    "mtnet_xs_g8": (7_433_500, 7_280_113, 6_551_040),
    "mtnet_s_g8": (12_204_988, 12_051_601, 10_867_200),
    "mtnet_m_g8": (13_274_842, 13_121_455, 11_834_112),
    "mtnet_l_g8": (24_883_258, 24_729_871, 22_331_136),
}
# The original network/MTnet.py: blocks per stage and groups of each original constructor.
LAYERS = {"xs": [2, 2, 2, 2], "s": [2, 2, 5, 3], "m": [3, 4, 6, 3], "l": [3, 4, 23, 3], "xl": [3, 8, 36, 3],
          "xxl": [3, 24, 36, 3]}


def _count(model, rnn_only=False):
    return sum(p.numel() for k, p in model.named_parameters() if not rnn_only or ".sr_" in k)


def test_registered_names_are_exactly_the_original_constructors():
    assert set(list_models("mtnet*")) == set(COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_name_builds_the_claimed_depth_and_groups(name):
    size = name.removeprefix("mtnet_").removesuffix("_g8")
    original = "MTNet_" + name.removeprefix("mtnet_")
    info = model_info(original)  # the original spelling is an alias of the lower-case name
    assert (info.name, info.family, info.depth) == (name, "mtnet", size)
    with torch.device("meta"):
        model = create_model(original, num_classes=10)
    assert [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)] == LAYERS[size]
    grouped = isinstance(model.layer1[0].conv2.norm_short, torch.nn.GroupNorm)
    assert grouped == name.endswith("_g8")


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts_equal_the_original(name):
    n400, n101, rnn = COUNTS[name]
    with torch.device("meta"):  # no memory, no init cost
        m400 = create_model(name, num_classes=400)
        m101 = create_model(name, num_classes=101)
    assert (_count(m400), _count(m101), _count(m400, rnn_only=True)) == (n400, n101, rnn)


def _fixture():
    fx = load_parity_fixture("mtnet_xs")
    return fx


def test_original_state_dict_loads_and_legacy_mode_reproduces_the_original_logits():
    fx = _fixture()
    model = create_model("MTNet_xs", num_classes=fx["num_classes"], legacy=True)
    # Same key names, order and shapes as the original: a checkpoint of the original code loads strictly.
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, shape) for k, shape, _ in fx["state_dict"]]
    model.load_state_dict(model.remap_original_state_dict(parity_state_dict(fx)), strict=True)
    model.eval()
    x = parity_clip(tuple(fx["input_shape"]))
    ref = torch.tensor(fx["logits"])
    with torch.no_grad():
        legacy = model(x)
        diff = (legacy - ref).abs().max().item()
        assert diff <= 1e-3 * max(1.0, fx["logits_absmax"]), diff

        # The default normalises the long stream once (the original applied it twice): a different function on the same
        # weights, which is why loading original checkpoints needs legacy=True.
        for m in model.modules():
            m.legacy = False
        fixed = model(x)
    assert (fixed - ref).abs().max().item() > 1e-3 * max(1.0, fx["logits_absmax"])


@pytest.mark.parametrize("legacy, updates", [(False, 1), (True, 2)])
def test_long_norm_runs_once_per_forward_unless_legacy(legacy, updates):
    conv = MTConv(64, 128, 3, padding=1, legacy=legacy).train()
    x = (torch.randn(2, 56, 8, 8, 8), torch.randn(2, 8, 4, 4, 4))
    ys, yl = conv(x)
    assert ys.shape == (2, 112, 8, 8, 8) and yl.shape == (2, 16, 4, 4, 4)
    assert conv.norm_short.num_batches_tracked.item() == 1
    assert conv.norm_long.num_batches_tracked.item() == updates


def test_lateral_is_resized_only_when_sizes_differ(monkeypatch):
    calls = []
    interpolate = F.interpolate

    def counting_interpolate(*args, **kwargs):
        calls.append(kwargs.get("size"))
        return interpolate(*args, **kwargs)

    monkeypatch.setattr(mtnet_module.F, "interpolate", counting_interpolate)
    conv = MTConv(64, 64, 1).eval()
    with torch.no_grad():
        conv((torch.randn(1, 56, 8, 8, 8), torch.randn(1, 8, 4, 4, 4)))  # lateral 8x8x8 -> 4x4x4 == long
        assert calls == []
        conv((torch.randn(1, 56, 8, 8, 8), torch.randn(1, 8, 2, 3, 5)))
        assert calls == [(2, 3, 5)]


def test_frame_selection_keeps_the_frames_most_similar_to_their_neighbours():
    # Frame t is a 2-channel vector at angle deg[t] with length t + 1. Squared cosines of consecutive pairs:
    # 1, 1, .25, .75, 1, 1, .41 -> inner-frame scores f1..f6 = 1, .625, .5, .875, 1, .71 -> keep 1, 4, 5, 6.
    deg = torch.tensor([0.0, 0, 0, 60, 90, 90, 90, 40])
    rad = torch.deg2rad(deg)
    frames = torch.stack([rad.cos(), rad.sin()], dim=1) * torch.arange(1, 9.0)[:, None]  # T x C
    x = frames.T[None, :, :, None, None].expand(2, 2, 8, 3, 4).contiguous()
    out = frame_select_pool(x)
    assert out.shape == (2, 2, 4, 3, 4)
    kept = out[:, :, :, 1, 2].norm(dim=1) - 1  # recovers the frame index from the length
    assert kept.round().tolist() == [[1, 4, 5, 6], [1, 4, 5, 6]]


def test_frame_selection_handles_short_clips():
    x = torch.randn(2, 4, 1, 5, 6, requires_grad=True)
    assert torch.equal(frame_select_pool(x), x)
    x2 = torch.randn(2, 4, 2, 5, 6, requires_grad=True)
    out = frame_select_pool(x2)
    assert out.shape == (2, 4, 1, 5, 6)
    torch.testing.assert_close(out, x2.mean(2, keepdim=True))
    out.sum().backward()
    assert x2.grad is not None
    assert frame_select_pool(torch.randn(1, 4, 3, 2, 2)).shape == (1, 4, 1, 2, 2)


def test_tiny_identity_check_looks_at_width_too():
    block = MTBlock(128, 256, stride=2, downsample=MTConv(128, 256, 1, stride=2, lateral=False))
    wide_short = torch.randn(1, 16, 1, 4, 2)  # height fine, width too small: the original ignored it
    assert block._enlarge_tiny(wide_short).shape == (1, 16, 1, 4, 3)
    assert block._enlarge_tiny(torch.randn(1, 16, 1, 2, 5)).shape == (1, 16, 1, 3, 5)
    block.legacy = True
    assert block._enlarge_tiny(wide_short).shape == (1, 16, 1, 4, 2)
    assert block._enlarge_tiny(torch.randn(1, 16, 1, 2, 5)).shape == (1, 16, 1, 3, 3)


@pytest.fixture(scope="module")
def xs_model():
    torch.manual_seed(0)
    return create_model("mtnet_xs", num_classes=7)


@pytest.mark.parametrize("frames", [1, 2, 3, 8])
@pytest.mark.parametrize("size", [(32, 32), (40, 56), (33, 19)])
def test_any_clip_length_and_size(xs_model, frames, size):
    xs_model.eval()
    with torch.no_grad():
        out = xs_model(torch.randn(2, 3, frames, *size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_stage_shapes_match_the_original():
    # The original network/MTnet.py, 16x112x112 input (short / long): C x T x H x W after each stage.
    model = create_model("mtnet_xs", num_classes=5).eval()
    shapes = []
    with torch.no_grad():
        x = model.stem(torch.randn(1, 3, 16, 112, 112))
        x = frame_select_pool(model.pool(x))
        xs, xl = torch.split(x, [56, 8], dim=1)
        streams = (xs, frame_select_pool(F.avg_pool3d(xl, (1, 2, 2), (1, 2, 2))))
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            streams = stage(streams)
            shapes.append([tuple(s.shape[1:]) for s in streams])
    assert shapes == [
        [(56, 8, 28, 28), (8, 4, 14, 14)],
        [(112, 4, 14, 14), (16, 2, 7, 7)],
        [(224, 2, 7, 7), (32, 1, 4, 4)],
        [(448, 1, 4, 4), (64, 1, 2, 2)],
    ]


@pytest.mark.parametrize("name, frames", [("mtnet_xs", 4), ("mtnet_xs", 1), ("mtnet_xs_g8", 2)])
def test_backward_reaches_every_parameter(name, frames):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    out = model(torch.randn(2, 3, frames, 36, 28))
    F.cross_entropy(out, torch.tensor([0, 2])).backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_zero_init_residual_zeroes_the_last_norm_of_every_block():
    model = MTNet([1, 1, 1, 1], num_classes=2, zero_init_residual=True)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            assert block.conv3.norm_short.weight.abs().sum() == 0
            assert block.conv3.norm_long.weight.abs().sum() == 0


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="rate"):
        MTNet([2, 2, 2, 2], rate=1.0)
    with pytest.raises(ValueError, match="four"):
        MTNet([2, 2, 2])
