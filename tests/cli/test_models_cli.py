"""`vidnet models`: table, JSON, wildcards, GMACs at a clip shape."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.errors import UsageError
from vidnet.network.cost import model_cost

runner = CliRunner()


def test_json_lists_matching_models_with_exact_counts():
    result = runner.invoke(app, ["models", "r3d_1*", "--json", "--macs", "--clip", "16x112x112"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) == {"r3d_18", "r3d_101", "r3d_152"}
    assert rows["r3d_18"]["params"] == 33_371_472 and rows["r3d_18"]["family"] == "r3d"
    assert rows["r3d_18"]["clip"] == [16, 112, 112]
    # thop in the reference counts BatchNorm too (6.442); convolutions and the classifier alone give 6.420.
    assert rows["r3d_18"]["gmacs"] == pytest.approx(6.420, abs=0.001)
    assert "1711.11248" in rows["r3d_18"]["paper"]


def test_table_and_no_macs():
    result = runner.invoke(app, ["models", "srtg_ip_csn_*", "--no-macs", "--classes", "101"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "params", "(M)"]
    row = next(line for line in lines if line.startswith("srtg_ip_csn_50 "))
    assert row.split()[1:3] == ["24.17", "srtg_ip_csn"]  # 24,166,501 parameters at 101 classes, no GMACs column
    assert "3 models" in lines[-1]


def test_macs_scale_with_the_clip():
    _, small = model_cost("srtg_r3d_18", clip=(8, 56, 56))
    _, large = model_cost("srtg_r3d_18", clip=(16, 112, 112))
    assert 6 < large / small < 10  # 8x the voxels; the LSTMs grow with T only


def test_bad_input_is_a_usage_error():
    result = runner.invoke(app, ["models", "r3d_18", "--macs", "--clip", "16x112"])
    assert result.exit_code == UsageError.exit_code and "error: --clip" in result.output
    result = runner.invoke(app, ["models", "nothing_like_this*"])
    assert result.exit_code == UsageError.exit_code and "error: " in result.output


@pytest.mark.parametrize("name,thop_gmacs", [("r3d_50", 6.74), ("srtg_r2plus1d_18", 5.897), ("ir_csn_50", 1.94),
                                              ("srtg_wide_r3d50_2", 21.76)])
def test_macs_agree_with_the_reference_thop_figures(name, thop_gmacs):
    # The original SRTG code's figures (thop, 16x112x112) also counts BatchNorm, which adds 0.3-2.2 %.
    _, macs = model_cost(name, clip=(16, 112, 112))
    assert 0.975 <= macs / 1e9 / thop_gmacs < 1.0


def test_comma_lists_typos_and_macs_on_request():
    result = runner.invoke(app, ["models", "r3d_18,mobilenet_3d_0*,r3d_18", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["r3d_18", "mobilenet_3d_050"]  # in the order given, once each
    assert all(r["gmacs"] is None for r in rows)  # MACs only on request
    result = runner.invoke(app, ["models", "r3d18"])
    assert result.exit_code == UsageError.exit_code
    assert "unknown model 'r3d18'; closest: r3d_18" in result.output


def test_counts_are_cached_per_name_classes_and_clip(monkeypatch, tmp_path):
    import vidnet.network.cost as cost

    monkeypatch.setenv("VIDNET_CACHE_DIR", str(tmp_path))
    first = cost.cached_model_costs(["r3d_18", "mobilenet_3d_050"], clip=(4, 32, 32), processes=1)
    assert first["r3d_18"] == model_cost("r3d_18", clip=(4, 32, 32))

    def no_building(*args, **kwargs):
        raise AssertionError("counted again instead of read from the cache")

    monkeypatch.setattr(cost, "model_cost", no_building)
    assert cost.cached_model_costs(["mobilenet_3d_050", "r3d_18"], clip=(4, 32, 32), processes=1) == first
    result = runner.invoke(app, ["models", "r3d_18,mobilenet_3d_050", "--macs", "--clip", "4x32x32", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["params"] for r in json.loads(result.output)] == [first["r3d_18"][0], first["mobilenet_3d_050"][0]]
    with pytest.raises(AssertionError, match="counted again"):  # another class count is another entry
        cost.cached_model_costs(["r3d_18"], num_classes=101, clip=None, processes=1)
    # A cache written by other code (another digest) or a damaged file is not trusted.
    path = cost.cost_cache_path()
    path.write_text(path.read_text().replace('"code": "', '"code": "x'))
    with pytest.raises(AssertionError, match="counted again"):
        cost.cached_model_costs(["r3d_18"], clip=(4, 32, 32), processes=1)
    path.write_text("{not json")
    with pytest.raises(AssertionError, match="counted again"):
        cost.cached_model_costs(["r3d_18"], clip=(4, 32, 32), processes=1)
