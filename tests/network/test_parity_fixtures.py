"""The parity fixtures: one folder, one README that says where each comes from, one loader for both forms."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from vidnet.testing import load_parity_fixture, parity_dir

TESTS = Path(__file__).resolve().parents[1]
PARITY = TESTS / "network" / "parity"


def test_every_fixture_lives_in_the_one_folder_and_its_readme_names_its_origin():
    assert parity_dir() == PARITY
    elsewhere = [p for p in TESTS.rglob("*.json*") if p.parent != PARITY and "parity" in str(p.relative_to(TESTS))]
    assert not elsewhere, f"parity fixtures outside {PARITY}: {elsewhere}"
    readme = (PARITY / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    files = sorted(p.name for p in PARITY.iterdir() if p.name != "README.md")
    assert files and all(f.endswith((".json", ".json.gz")) for f in files), files
    for name in files:
        if name.endswith(".json.gz"):  # <model>.<layout>.json.gz: the layout's row lists the model
            model, layout = name.removesuffix(".json.gz").split(".")
            row = [r for r in rows if f"`<model>.{layout}.json.gz`" in r]
            assert row and f"`{model}`" in row[0], f"{name}: the README's {layout} row does not list {model}"
        else:
            assert any(f"`{name}`" in r for r in rows), f"{name}: no README row says where it comes from"


def test_one_loader_reads_both_forms():
    original = load_parity_fixture("r3d_18")  # the original SRTG code's r3d_18
    ecosystem = load_parity_fixture("r3d_18.torchvision")  # torchvision's, gzipped
    assert original["name"] == ecosystem["name"] == "r3d_18"
    assert "layout" not in original and ecosystem["layout"] == "torchvision"
    assert original["state_dict"] != ecosystem["state_dict"]


def test_loader_refuses_a_missing_or_doubled_fixture(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDNET_PARITY_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_parity_fixture("nothing")
    (tmp_path / "m.json").write_text(json.dumps({"name": "m"}))
    assert load_parity_fixture("m") == {"name": "m"}
    with gzip.open(tmp_path / "m.json.gz", "wt") as f:
        json.dump({"name": "m2"}, f)
    with pytest.raises(ValueError, match=r"both m.json and m.json.gz"):
        load_parity_fixture("m")
