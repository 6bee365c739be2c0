"""SubBatchNorm3d: plain BatchNorm3d at N == sub_batch, per-group statistics above it, identical eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidnet.errors import UsageError
from vidnet.train.sub_batch_norm import SubBatchNorm3d, convert_sub_batch_norm, resolve_sub_batch, set_sub_batch


def _pair(c: int = 3, k: int = 2, momentum: float | None = 0.1) -> tuple[nn.BatchNorm3d, SubBatchNorm3d]:
    torch.manual_seed(0)
    bn = nn.BatchNorm3d(c, momentum=momentum)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    sub = SubBatchNorm3d(c, sub_batch=k, momentum=momentum)
    sub.load_state_dict(bn.state_dict())
    return bn, sub


def _clips(n: int, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    # A different offset and scale per clip, so per-group and whole-batch statistics really differ.
    return torch.randn(n, c, 2, 3, 4, generator=g) * torch.arange(1, n + 1).view(n, 1, 1, 1, 1) + torch.arange(n).view(
        n, 1, 1, 1, 1)


@pytest.mark.parametrize("n", [1, 2])
def test_equals_batchnorm3d_up_to_sub_batch(n):
    bn, sub = _pair(k=2)
    x = _clips(n)
    torch.testing.assert_close(sub(x), bn(x))
    for name, buf in bn.state_dict().items():
        torch.testing.assert_close(sub.state_dict()[name], buf, msg=name)


@pytest.mark.parametrize(("n", "k", "momentum"), [(8, 2, 0.1), (6, 3, 0.3), (7, 3, 0.1), (8, 4, None)])
def test_statistics_equal_per_group_batchnorm(n, k, momentum):
    bn, sub = _pair(k=k, momentum=momentum)
    x = _clips(n).requires_grad_()
    y = sub(x)
    parts = torch.split(x, k)
    refs = []
    for part in parts:  # each group through its own fresh copy of the BN: its output is the reference
        ref = nn.BatchNorm3d(3, momentum=1.0)
        ref.load_state_dict(bn.state_dict())
        refs.append((ref(part), ref.running_mean.clone(), ref.running_var.clone(), part.shape[0]))
    torch.testing.assert_close(y, torch.cat([r[0] for r in refs]))
    # Running statistics: one update towards the clip-weighted mean of the groups' means and unbiased variances.
    f = 1.0 if momentum is None else momentum
    mean = sum(r[1] * r[3] for r in refs) / n
    var = sum(r[2] * r[3] for r in refs) / n
    torch.testing.assert_close(sub.running_mean, (1 - f) * bn.running_mean + f * mean)
    torch.testing.assert_close(sub.running_var, (1 - f) * bn.running_var + f * var)
    assert int(sub.num_batches_tracked) == 1
    # Gradients flow to the input and the affine parameters as through per-group BN.
    y.square().sum().backward()
    assert x.grad is not None and sub.weight.grad is not None and torch.isfinite(x.grad).all()


def test_gradients_equal_per_group_batchnorm():
    bn, sub = _pair(k=2)
    x1 = _clips(6).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    w = torch.randn(6, 3, 2, 3, 4)
    (sub(x1) * w).sum().backward()
    (torch.cat([bn(p) for p in torch.split(x2, 2)]) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_eval_is_batchnorm3d():
    bn, sub = _pair(k=2)
    for _ in range(3):  # give both some running statistics, different ones
        bn(_clips(8))
        sub(_clips(8))
    sub.load_state_dict(bn.state_dict())
    bn.eval()
    sub.eval()
    x = _clips(8)
    assert torch.equal(sub(x), bn(x))


def test_state_dict_keys_and_conversion():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Sequential(nn.BatchNorm3d(4), nn.BatchNorm2d(4)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    convert_sub_batch_norm(model, 2)
    assert isinstance(model[1], SubBatchNorm3d) and isinstance(model[2][0], SubBatchNorm3d)
    assert type(model[2][1]) is nn.BatchNorm2d
    assert isinstance(model[1], nn.BatchNorm3d)  # code that looks for BatchNorm3d still finds it
    assert [id(p) for p in model.parameters()] == params  # an optimizer built earlier still holds them
    assert list(model.state_dict()) == list(before)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    plain = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Sequential(nn.BatchNorm3d(4), nn.BatchNorm2d(4)))
    plain.load_state_dict(model.state_dict())  # and back: a checkpoint trained with sub-batch BN loads in plain BN
    assert set_sub_batch(model, 4) == 2 and model[1].sub_batch == 4


def test_bf16_autocast_runs():
    _, sub = _pair(k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sub(_clips(4).bfloat16())
    assert y.shape == (4, 3, 2, 3, 4)
    assert sub.running_mean.dtype == torch.float32


@pytest.mark.parametrize(
    ("setting", "multigrid", "sync_bn", "expected"),
    [("auto", True, False, 8), ("auto", False, False, None), ("auto", True, True, None), ("off", True, False, None),
     ("3", True, False, 3), ("3", False, False, 3)],
)
def test_resolve_sub_batch(setting, multigrid, sync_bn, expected):
    assert resolve_sub_batch(setting, base_batch=8, multigrid=multigrid, sync_bn=sync_bn) == expected


def test_explicit_sub_batch_with_sync_bn_is_an_error():
    with pytest.raises(UsageError, match="--bn-sub-batch 3"):
        resolve_sub_batch("3", base_batch=8, multigrid=True, sync_bn=True)
