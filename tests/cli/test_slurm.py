"""``vidnet slurm convert --cluster local``: the shards run as submitit jobs on this machine, then merge into the
dataset a single conversion writes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.data.sample import SampleOptions, make_sample_dataset


@pytest.mark.slow
def test_slurm_convert_local_two_shards_equal_single_run(tmp_path):
    pytest.importorskip("submitit")
    src, single, sharded = tmp_path / "videos", tmp_path / "single", tmp_path / "sharded"
    make_sample_dataset(src, SampleOptions(classes=2, videos_per_class=3, min_frames=8, max_frames=12, width=64,
                                           height=48, workers=1))
    convert_dataset(src, single, ConvertOptions(workers=1, short_side=32))
    res = subprocess.run([sys.executable, "-m", "vidnet", "slurm", "convert", src, sharded, "--shards", "2",
                          "--cluster", "local", "--cpus-per-task", "1", "--short-side", "32", "--logs",
                          tmp_path / "logs"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "merged 2 shards" in res.stdout + res.stderr
    assert (sharded / "convert-summary.shard-2-of-2.json").is_file()
    for name in ("index.csv", "labels.json", "convert-errors.csv"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    stores = {p.relative_to(single): p.read_bytes() for p in single.rglob("frames.db")}
    assert len(stores) == 6 and stores == {p.relative_to(sharded): p.read_bytes() for p in sharded.rglob("frames.db")}


def test_without_submitit_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    res = CliRunner().invoke(app, ["slurm", "convert", str(tmp_path), str(tmp_path / "d"), "--cluster", "local"])
    assert res.exit_code == 1 and "pip install 'vidnet[slurm]'" in res.output and "Traceback" not in res.output
