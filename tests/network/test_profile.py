"""Profiling: MACs against okankop/Efficient-3DCNNs' code, timings, published-table lookup, CLI table and JSON."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.errors import UsageError
from vidnet.network import create_model
from vidnet.network.cost import model_cost
from vidnet.network.profile import PUBLISHED, count_params, measure_latency, peak_memory, profile_model

TINY = (4, 32, 32)


def _macs(name: str, clip: tuple[int, int, int], num_classes: int = 400) -> int:
    return model_cost(name, num_classes=num_classes, clip=clip)[1]


def _flop_counter_macs(name: str, clip: tuple[int, int, int], num_classes: int = 400) -> int:
    """Half the FLOPs PyTorch's FlopCounterMode counts on a real CPU forward pass: independent of vidnet.network.cost
    (built on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name, num_classes=num_classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, *clip))
    return counter.get_total_flops() // 2


# GMACs @600 classes, 16x112x112, measured with FlopCounter on the original code (okankop/Efficient-3DCNNs).
@pytest.mark.parametrize(("name", "gmacs"), [
    ("mobilenetv2_3d_020", 0.0549), ("mobilenet_3d_050", 0.0940), ("shufflenetv2_3d_025", 0.1105),
    ("shufflenet_3d", 0.1877), ("squeezenet1_1_3d", 0.9026),
])
def test_count_macs_matches_zoo(name: str, gmacs: float) -> None:
    assert round(_macs(name, (16, 112, 112), 600) / 1e9, 4) == gmacs


def test_profile_macs_equal_vidnet_models() -> None:
    res = CliRunner().invoke(app, ["models", "mobilenetv2_3d_0*", "--macs", "--clip", "4x32x32", "--json"])
    assert res.exit_code == 0, res.output
    for row in json.loads(res.output):
        r = profile_model(row["name"], clip=TINY, repeats=1, warmup=0, backward=False)
        assert round(r.macs / 1e9, 3) == row["gmacs"] and r.params == row["params"]
    model = create_model("mobilenetv2_3d_020", num_classes=7)
    r = profile_model(model, clip=TINY, repeats=1, warmup=0, backward=False, label="m")
    assert r.macs == _macs("mobilenetv2_3d_020", TINY, 7) and r.network == "m"


def test_published_table_names_are_registered_and_params_match() -> None:
    from vidnet.network import model_info

    for name, (_, params) in PUBLISHED.items():
        with torch.device("meta"):
            model = create_model(name, num_classes=600)
        assert model_info(name).name == name
        assert abs(count_params(model) - params) <= 0.006e6, name  # the table prints 2 decimals in millions


def test_latency_and_memory_positive() -> None:
    model = create_model("mobilenetv2_3d_020", num_classes=5)
    x = torch.randn(2, 3, *TINY)
    t = measure_latency(model, x, repeats=3, warmup=1)
    assert 0 < t.q1_ms <= t.median_ms <= t.q3_ms and t.repeats == 3
    tb = measure_latency(model, x, repeats=2, warmup=0, backward=True)
    assert tb.median_ms > 0 and all(p.grad is None for p in model.parameters())
    mem, method = peak_memory(model, torch.randn(2, 3, 8, 64, 64), backward=True)
    assert method == "rss" and mem >= 0
    with pytest.raises(UsageError, match="--repeats"):
        measure_latency(model, x, repeats=0)


def test_profile_model_row() -> None:
    r = profile_model("mobilenet_3d_050", clip=TINY, batch=2, repeats=2, warmup=1, num_classes=600)
    assert r.params == count_params(create_model("mobilenet_3d_050", num_classes=600))
    assert r.macs == _macs("mobilenet_3d_050", TINY, 600)
    assert r.forward.median_ms > 0 and r.forward_backward is not None and r.forward_backward.median_ms > 0
    assert r.clips_per_s == pytest.approx(2 / (r.forward.median_ms / 1e3))
    assert r.frames_per_s == pytest.approx(r.clips_per_s * TINY[0])
    # Published Table 8: 98 MFLOPs (thop), 1.17M params; our 600-class count at 16x112x112.
    assert r.published_mflops == 98 and r.published_params == 1.17e6
    assert round(r.macs_600 / 1e6, 1) == 94.0 and r.params_600 == 1_171_896
    d = r.to_dict()
    assert d["gflops"] == pytest.approx(2 * d["gmacs"]) and d["forward"]["iqr_ms"] >= 0


def test_profile_bad_options() -> None:
    with pytest.raises(UsageError, match="--precision"):
        profile_model("mobilenet_3d_050", clip=TINY, precision="int4")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--batch"):
        profile_model("mobilenet_3d_050", clip=TINY, batch=0)


def test_profile_bf16_cpu() -> None:
    r = profile_model("mobilenetv2_3d_020", clip=TINY, precision="bf16", repeats=1, warmup=0, backward=False)
    assert r.forward.median_ms > 0 and r.precision == "bf16"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_cuda() -> None:
    r = profile_model("mobilenetv2_3d_020", clip=TINY, device="cuda", repeats=3, warmup=1)
    assert r.memory_method == "cuda_max_allocated" and r.memory_per_clip > 0


def test_cli_profile_table_and_json() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["profile", "-n", "mobilenetv2_3d_02*,shufflenetv2_3d_025", "--clip", "4x32x32",
                              "--repeats", "1", "--warmup", "0", "--no-backward", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert [r["network"] for r in rows] == ["mobilenetv2_3d_020", "shufflenetv2_3d_025"]
    assert rows[0]["macs"] == _flop_counter_macs("mobilenetv2_3d_020", TINY) and rows[0]["macs"] > 0
    res = runner.invoke(app, ["profile", "-n", "mobilenetv2_3d_020", "--clip", "4x32x32", "--repeats", "1",
                              "--warmup", "0", "--no-backward"], terminal_width=250)
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if "network" in line)
    row = next(line for line in res.output.splitlines() if "mobilenetv2_3d_020" in line)
    names, values = ([c.strip() for c in re.split(r"[┃│]", line)] for line in (header, row))
    cells = dict(zip(names, values, strict=True))
    # params and GMACs of the JSON row; Köpüklü et al. (ICCVW 2019) Table 8 publishes 63 MFLOPs, 0.96 M params
    assert cells["params (M)"] == f"{rows[0]['params'] / 1e6:.3f}" and cells["GMACs"] == f"{rows[0]['macs'] / 1e9:.4f}"
    assert cells["pub MFLOPs"] == "63" and cells["pub params (M)"].startswith("0.96")
    res = runner.invoke(app, ["profile", "-n", "nosuch_*"])
    assert res.exit_code == 2 and "no registered model" in res.output
