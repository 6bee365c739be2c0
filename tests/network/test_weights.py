"""load_weights (safe loading, prefixes, wrappers, original layout, report) and the fine-tuning helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vidnet.errors import UsageError, VidnetError
from vidnet.network import create_model
from vidnet.network.finetune import find_head, freeze_up_to, param_groups, replace_head
from vidnet.network.weights import load_weights, read_state_dict, rename_key


@pytest.fixture(scope="module")
def source() -> nn.Module:
    torch.manual_seed(0)
    return create_model("srtg_r3d_18", num_classes=10, gates=False)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip_through_a_wrapped_dataparallel_file(tmp_path, source):
    path = tmp_path / "ckpt.pth"
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
               "optimizer": {"lr": 0.1}}
    torch.save(wrapped, path)
    target = create_model("srtg_r3d_18", num_classes=10, gates=False)
    report = load_weights(target, path, strict=True)
    assert report.complete and not report.remapped
    assert _same(source, target)


def test_original_key_layout_is_remapped(source):
    original = {k.replace(".sr.", ".sar."): v for k, v in source.state_dict().items()}
    assert any(".sar." in k for k in original)
    target = create_model("srtg_r3d_18", num_classes=10, gates=False)
    report = load_weights(target, original, strict=True)
    assert report.remapped and _same(source, target)


def test_mismatches_are_skipped_and_reported(source):
    target = create_model("srtg_r3d_18", num_classes=5)  # new head size: fc is skipped
    state = dict(source.state_dict())
    state["extra.weight"] = torch.zeros(3)
    report = load_weights(target, state)
    assert set(report.skipped) == {"fc.weight", "fc.bias", "extra.weight"}
    assert "shape (10, 512) != model (5, 512)" in report.skipped["fc.weight"]
    assert report.skipped["extra.weight"] == "not in the model"
    assert set(report.missing) == {"fc.weight", "fc.bias"}
    assert torch.equal(target.layer1[0].conv1[0][0].weight, source.layer1[0].conv1[0][0].weight)
    with pytest.raises(VidnetError, match="skipped 3"):
        load_weights(target, state, strict=True)


def test_a_plain_backbone_checkpoint_fills_an_srtg_model(source):
    plain = create_model("r3d_18", num_classes=10)
    report = load_weights(plain, source.state_dict())
    assert not report.missing and all(".sr." in k for k in report.skipped)


def test_rename_key_applies_the_rules_in_order():
    # The one key-renaming loop of every remap_original_state_dict (X3D, SlowFast, MViTv2): each rule sees the
    # previous one's result, a callable replacement gets the match, a key no rule matches passes unchanged.
    from vidnet.network.layers.bottleneck3d import BRANCH_BLOCK_RULES

    rules = [(r"^s(\d)\.pathway0_res(\d+)\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}."), *BRANCH_BLOCK_RULES]
    assert rename_key("s2.pathway0_res0.branch2.a_bn.weight", rules) == "layer1.0.bn1.weight"
    assert rename_key("blocks.1.res_blocks.0.branch1_conv.weight", BRANCH_BLOCK_RULES) == \
        "blocks.1.res_blocks.0.downsample.0.weight"
    assert rename_key("fc.weight", rules) == "fc.weight"
    assert rename_key("a.b", [(r"^a\.", "x."), (r"^x\.", "y.")]) == "y.b"


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Payload()}, path)
    with pytest.raises(VidnetError, match="evil.pth: refused"):
        read_state_dict(path)


class _Payload:
    pass


def test_unreadable_inputs_name_the_file(tmp_path):
    with pytest.raises(VidnetError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VidnetError, match="bad.pth"):
        read_state_dict(bad)
    with pytest.raises(VidnetError, match="no tensors"):
        read_state_dict({"state_dict": {"a": 1}})


def test_replace_head_and_param_groups():
    model = create_model("srtg_r3d_18", num_classes=400)
    assert find_head(model)[0] == "fc"
    new = replace_head(model, 7)
    assert model.fc is new and new.out_features == 7
    assert model(torch.randn(2, 3, 2, 16, 16)).shape == (2, 7)
    groups = {g["name"]: g for g in param_groups(model, lr=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0,
                                                  recurrent_lr_mult=0.5)}
    assert groups["head"]["lr"] == pytest.approx(0.1) and len(groups["head"]["params"]) == 2
    assert groups["backbone"]["lr"] == pytest.approx(0.01)
    assert groups["recurrent"]["lr"] == pytest.approx(0.05)
    lstm = {id(p) for m in model.modules() if isinstance(m, nn.LSTM) for p in m.parameters()}
    assert {id(p) for p in groups["recurrent"]["params"]} == lstm
    counted = sum(len(g["params"]) for g in groups.values())
    assert counted == len(list(model.parameters()))
    torch.optim.SGD(list(groups.values()), lr=0.1)  # accepted by an optimizer as is


def test_freeze_up_to_a_stage():
    model = create_model("r3d_18", num_classes=3)
    assert freeze_up_to(model, "layer2") == ["stem", "pool", "layer1", "layer2"]
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert {g["name"] for g in param_groups(model, lr=1.0)} == {"backbone", "head"}
    stats = model.layer1[0].conv1[1].running_mean.clone()
    model.train()
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert torch.equal(model.layer1[0].conv1[1].running_mean, stats)  # frozen BN keeps its statistics
    assert model.layer1[0].conv1[0][0].weight.grad is None
    with pytest.raises(UsageError, match="no stage 'layer9'"):
        freeze_up_to(model, "layer9")


def test_torchvision_layout_loads_into_r3d_without_stem_pool():
    torch.manual_seed(0)
    ours = create_model("r3d_18", num_classes=400, stem_pool=False)
    # torchvision's Conv3DSimple is an nn.Conv3d, one level shallower than ours.
    tv = {k.replace(".0.0.weight", ".0.weight") if k.startswith("layer") else k: v
          for k, v in ours.state_dict().items()}
    assert "layer1.0.conv1.0.weight" in tv
    target = create_model("r3d_18", num_classes=400, stem_pool=False)
    report = load_weights(target, tv, strict=True)
    assert report.remapped and _same(ours, target)
