"""Compression: structured pruning gives smaller equivalent-shaped models, sparsity, int8, distillation loss."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.errors import UsageError
from vidnet.network import create_model
from vidnet.network.compress import (
    find_prunable_chains,
    magnitude_prune,
    model_size_bytes,
    prune_channels,
    quantize_dynamic_int8,
    quantize_static_int8,
    recalibrate_batchnorm,
    sparsity,
)
from vidnet.network.cost import count_macs
from vidnet.network.profile import count_params
from vidnet.network.weights import load_model
from vidnet.train.distill import distillation_loss

TINY = (1, 3, 4, 32, 32)


@pytest.mark.parametrize("name", ["mobilenetv2_3d_020", "mobilenet_3d_050", "squeezenet1_1_3d", "resnet10_3d",
                                  "shufflenetv2_3d_025"])
def test_pruned_model_is_smaller_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=6).eval()
    pruned, chains = prune_channels(model, 0.5)
    assert chains, "every model here has inner channel sets"
    assert count_params(pruned) < count_params(model)
    assert count_macs(pruned, TINY[2:]) < count_macs(model, TINY[2:])
    assert model_size_bytes(pruned) < model_size_bytes(model)
    x = torch.randn(2, *TINY[1:])
    assert pruned(x).shape == model(x).shape == (2, 6)
    pruned.train()
    pruned(x).sum().backward()
    assert all(p.grad is not None for p in pruned.parameters() if p.requires_grad)


def test_ratio_zero_is_identity() -> None:
    model = create_model("mobilenetv2_3d_020", num_classes=4).eval()
    same, _ = prune_channels(model, 0.0)
    x = torch.randn(1, *TINY[1:])
    torch.testing.assert_close(same(x), model(x), rtol=0, atol=0)


def test_l1_pruning_removes_dead_filters_exactly() -> None:
    # Filters with zero weights and a zero batch-norm output contribute nothing: removing them (they have the
    # lowest L1 norm) must leave the output unchanged, which checks the slicing of every tensor involved.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                          nn.Conv3d(8, 8, 3, padding=1, groups=8), nn.BatchNorm3d(8), nn.ReLU(),
                          nn.Conv3d(8, 5, 1)).eval()
    dead = [1, 4, 6, 7]
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
        model[0].weight[dead] = 0
        model[0].bias[dead] = 0
        model[1].running_mean[dead] = 0
        model[1].bias[dead] = 0
        model[3].bias[dead] = 0
        model[4].running_mean[dead] = 0
        model[4].bias[dead] = 0
    pruned, chains = prune_channels(model, 0.5)
    assert [c.producer for c in chains] == ["0"] and chains[0].consumers == ("6",)
    assert pruned[0].out_channels == 4 and pruned[3].groups == 4 and pruned[6].in_channels == 4
    x = torch.randn(2, 3, 4, 8, 8)
    torch.testing.assert_close(pruned(x), model(x))


def test_residual_outputs_and_grouped_convs_untouched() -> None:
    model = create_model("resnet18_3d", num_classes=3)
    pruned, _ = prune_channels(model, 0.5)
    for (name, a), (_, b) in zip(model.named_modules(), pruned.named_modules(), strict=True):
        if name.endswith("conv2"):  # block outputs feed the residual sum: width kept
            assert a.out_channels == b.out_channels, name
        if name.endswith("conv1") and name.startswith("layer"):
            assert b.out_channels == a.out_channels // 2, name
    # ResNeXt's middle conv is grouped: no chain may cross it; only the stem (feeding the first block's conv1
    # and its projection shortcut, both plain) qualifies.
    chains = find_prunable_chains(create_model("resnext50_3d", num_classes=3))
    assert [(c.producer, c.consumers) for c in chains] == [("conv1", ("layer1.0.conv1", "layer1.0.downsample.0"))]


def test_prune_ratio_validated() -> None:
    with pytest.raises(UsageError, match="prune ratio"):
        prune_channels(nn.Conv3d(1, 1, 1), 1.0)


def test_magnitude_prune_sparsity() -> None:
    model = create_model("mobilenetv2_3d_020", num_classes=4)
    sparse = magnitude_prune(model, 0.6)
    assert sparsity(model) == 0.0
    assert sparsity(sparse) == pytest.approx(0.6, abs=0.01)
    assert count_params(sparse) == count_params(model)  # unstructured: dense tensors, same size
    assert not any(n.endswith("_orig") for n, _ in sparse.named_parameters())


def test_dynamic_quantization_within_tolerance() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    q = quantize_dynamic_int8(model)
    x = torch.randn(4, 3, 4, 8, 8)
    ref = model(x)
    # int8 weights with per-batch activation scales: stated tolerance 2% of the logit range.
    assert (q(x) - ref).abs().max() <= 0.02 * ref.abs().max()
    assert model_size_bytes(q) < model_size_bytes(model) / 3


def test_static_quantization_of_conv3d_runs_within_tolerance() -> None:
    torch.manual_seed(0)
    model = create_model("resnet10_3d", num_classes=5).eval()
    calib = [torch.randn(2, *TINY[1:]) for _ in range(4)]
    q = quantize_static_int8(model, calib)
    assert any("Conv3d" in type(m).__name__ and "quantized" in type(m).__module__ for m in q.modules())
    x = calib[0]
    ref = model(x)
    # Per-tensor int8 activations through 10 layers: stated tolerance 15% of the logit range on this input.
    assert (q(x) - ref).abs().max() <= 0.15 * ref.abs().max()
    assert model_size_bytes(q) < model_size_bytes(model) / 3


def test_distillation_loss() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    assert distillation_loss(t, t, y, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    soft = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") * 9
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.3, temperature=3.0),
                               0.3 * soft + 0.7 * F.cross_entropy(s, y))
    t.requires_grad_(True)
    distillation_loss(s, t, y).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(UsageError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(UsageError, match="shape"):
        distillation_loss(s, t[:, :3], y)
    with pytest.raises(UsageError, match="temperature"):
        distillation_loss(s, t, y, temperature=0.0)
    # Logits scaled by T at temperature T are the T = 1 distributions: the soft term is then exactly T^2 times
    # the T = 1 one (the factor that keeps the soft gradients' scale independent of T).
    s2, t2 = s.detach() * 5, t * 5
    assert distillation_loss(s2, t2, y, alpha=1.0, temperature=5.0).item() == pytest.approx(
        25 * distillation_loss(s.detach(), t, y, alpha=1.0, temperature=1.0).item(), rel=1e-5)
    smooth = distillation_loss(s, t, y, alpha=0.0, label_smoothing=0.1)
    torch.testing.assert_close(smooth, F.cross_entropy(s, y, label_smoothing=0.1))


def test_cli_compress_json(tmp_path) -> None:
    res = CliRunner().invoke(app, ["compress", "-n", "mobilenetv2_3d_020", "--clip", "4x32x32", "--num-classes",
                                   "4", "--ratios", "0.5", "--sparsity", "0.5", "--quantize", "dynamic",
                                   "--repeats", "1", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["variant"]: r for r in (json.loads(line) for line in res.output.splitlines() if line.startswith("{"))}
    assert list(rows) == ["base", "prune 0.50", "sparse 0.50", "int8 dynamic"]
    assert rows["prune 0.50"]["params"] < rows["base"]["params"]
    assert rows["prune 0.50"]["macs"] < rows["base"]["macs"]
    assert rows["sparse 0.50"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows["base"]["accuracy"] is None  # no --dataset
    # The pruned variant is a weight file carrying its channel counts; the loader rebuilds it exactly. Every
    # float variant reads back through the safe door; the int8 one is TorchScript.
    saved = load_model(tmp_path / "mobilenetv2_3d_020_prune_0.50.pth")
    assert saved.network == "mobilenetv2_3d_020" and count_params(saved.model) == rows["prune 0.50"]["params"]
    sparse = load_model(tmp_path / "mobilenetv2_3d_020_sparse_0.50.pth").model
    assert sum(int((p == 0).sum()) for p in sparse.parameters()) > 0
    assert torch.jit.load(str(tmp_path / "mobilenetv2_3d_020_int8_dynamic.ts"))(torch.randn(1, 3, 4, 32, 32)).shape \
        == (1, 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_compress_static_int8_saves_what_it_can_after_the_table(tmp_path) -> None:
    # Formerly: torch.save of the FX int8 model raised AttributeError, no table was printed and a truncated
    # file was left behind.
    res = CliRunner().invoke(app, ["compress", "--network", "mobilenet_3d_050", "--clip", "4x32x32", "--ratios", "",
                                   "--sparsity", "", "--quantize", "static", "--repeats", "1", "--threads", "1",
                                   "--out", str(tmp_path / "cq")])
    assert res.exit_code == 0, res.output
    assert "int8 static" in res.output and "Traceback" not in res.output
    table_at = res.output.index("int8 static")
    saved_at = res.output.index("mobilenet_3d_050_base.pth")
    assert table_at < saved_at  # the table comes first
    files = sorted(p.name for p in (tmp_path / "cq").iterdir())
    assert "mobilenet_3d_050_base.pth" in files and not [f for f in files if f.startswith(".")]
    if "mobilenet_3d_050_int8_static.ts" in files:
        model = torch.jit.load(str(tmp_path / "cq" / "mobilenet_3d_050_int8_static.ts"))
        assert model(torch.randn(1, 3, 4, 32, 32)).shape[0] == 1
    else:
        assert "not saved: int8 static" in res.output


def test_recalibrate_batchnorm_restores_modes() -> None:
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4)).eval()
    clips = [torch.randn(2, 3, 2, 4, 4) * 5 + 3 for _ in range(3)]
    recalibrate_batchnorm(model, clips)
    bn = model[1]
    feats = torch.cat([model[0](c) for c in clips]).transpose(0, 1).flatten(1)
    torch.testing.assert_close(bn.running_mean, feats.mean(1), rtol=1e-4, atol=1e-4)
    assert not bn.training and bn.momentum == 0.1


def test_clip_accuracy_counts_correct_clips() -> None:
    from vidnet.eval.multiview import clip_accuracy

    class Bright(nn.Module):  # class 1 for bright clips, class 0 for dark ones
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3, 4))
            return torch.stack([-m, m], 1)

    items = [{"clip": torch.full((3, 2, 4, 4), v, dtype=torch.uint8), "label": lab}
             for v, lab in [(250, 1), (5, 0), (240, 0), (10, 0)]]
    acc = clip_accuracy(Bright(), items, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), batch_size=3)
    assert acc == 0.75
    assert clip_accuracy(Bright(), items, mean=(0.5,) * 3, std=(0.25,) * 3, limit=1) == 1.0
