"""benchmark-io on the tiny dataset: every format gives the same frames; the command prints and writes JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.benchmark import BenchmarkOptions, parse_shape, rss_bytes
from vidnet.data.sample import write_video
from vidnet.data.video import iter_video_frames, read_video_frames
from vidnet.errors import UsageError


def test_read_video_frames_is_frame_accurate(tmp_path):
    # Frame i is a flat grey of 4 * i: the decoded level tells which frame came back.
    frames = np.stack([np.full((48, 64, 3), 4 * i, np.uint8) for i in range(60)])
    path = tmp_path / "grey.mp4"
    write_video(path, frames, 25, "libx264")
    idx = [17, 5, 5, 59, 0, 30]
    got = read_video_frames(path, idx)
    assert got.shape == (6, 48, 64, 3)
    assert np.abs(got.reshape(6, -1).mean(1) - 4 * np.array(idx)).max() < 3
    every = np.stack(list(iter_video_frames(path)))
    assert np.array_equal(read_video_frames(path, [40, 41, 42]), every[40:43])  # the same pixels as a full decode
    with pytest.raises(Exception, match="frame 60 not found"):
        read_video_frames(path, [58, 60])


def test_options_and_helpers():
    assert parse_shape("384x8x112") == (384, 8, 112)
    with pytest.raises(UsageError):
        parse_shape("384x8")
    with pytest.raises(UsageError, match="unknown avi"):
        BenchmarkOptions(formats=["sqlite", "avi"])
    assert rss_bytes() > 10 * 2**20


def _same_clips(tiny_dataset, tmp_path):
    """Every format's dataset returns the same frames (up to JPEG and H.264 loss) for the same index."""
    from vidnet.data import benchmark as b

    report_opts = BenchmarkOptions(shapes=[(2, 4, 32)], workers=(0,), batches=1, repeat=1, scratch=tmp_path / "s",
                                   rss_clips=0, scaling=False)
    return b.run_benchmark(tiny_dataset, report_opts)


def test_run_benchmark_all_formats_tiny(tiny_dataset, tmp_path):
    report = _same_clips(tiny_dataset, tmp_path)
    assert [c.format for c in report.cells] == ["sqlite", "jpg", "video", "hdf5", "decode"]
    assert all(c.clips == 2 and c.clips_per_s > 0 for c in report.cells)
    assert next(c for c in report.cells if c.format == "decode").ratio_to_decode == 1.0
    assert report.stored_size == (48, 64) and report.videos == 6
    sizes = {c.format: c.bytes_per_video for c in report.cells}
    assert sizes["hdf5"] > sizes["sqlite"] > sizes["jpg"] == sizes["decode"] > sizes["video"]
    assert (tmp_path / "s" / "jpg").is_dir() and (tmp_path / "s" / "video").is_dir()
    assert report.reduced_decode["1/2_speedup"] > 0


def test_formats_read_the_same_frames(tiny_dataset, tmp_path):
    from vidnet.data import benchmark as b
    from vidnet.data.transforms import ClipEval, EvalConfig

    _same_clips(tiny_dataset, tmp_path)  # writes the scratch copies
    s = tmp_path / "s"
    ds0 = b._SqliteDataset(tiny_dataset, split=None)
    blobs = {r.path: ds0._store(r).get_bytes(range(r.n_frames)) for r in ds0.rows}
    common = {"split": None, "num_frames": 5, "size": (48, 64),
              "transform": ClipEval(EvalConfig(resize_short=None, crop="none"))}
    datasets = {
        "sqlite": b._SqliteDataset(tiny_dataset, **common),
        "jpg": b._JpgDataset(tiny_dataset, folder=s / "jpg", **common),
        "hdf5": b._Hdf5Dataset(tiny_dataset, folder=s / "hdf5", **common),
        "video": b._VideoDataset(tiny_dataset, files={r.path: s / "video" / f"{r.path}.mp4" for r in ds0.rows},
                                 **common),
        "decode": b._DecodeDataset(tiny_dataset, blobs=blobs, **common),
    }
    for i in range(len(ds0)):
        ref = datasets["sqlite"][i]["clip"]
        for fmt in ("jpg", "hdf5", "decode"):
            assert datasets[fmt][i]["clip"].equal(ref), fmt
        # H.264 re-encoding is lossy: the decoded frames must be closer to the stored frames of the same
        # numbers than to their neighbours'.
        frames = datasets["sqlite"].sampler.sample(ds0.rows[i].n_frames, 5, None)
        store = ds0._store(ds0.rows[i])
        video = datasets["video"][i]["clip"].permute(1, 2, 3, 0).float().numpy()
        for f, got in zip(frames, video, strict=True):
            errors = {g: np.abs(store.get_frames([g])[0] - got).mean() for g in range(ds0.rows[i].n_frames)}
            assert min(errors, key=errors.get) == f and errors[f] < 6


def test_benchmark_io_command(tiny_dataset, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "--shape", "4x4x32", "--batches", "2",
                                      "--workers", "0,2", "--repeat", "1", "--rss-clips", "16", "-q",
                                      "--frame-interval", "1,3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("sqlite", "jpg", "video", "hdf5", "decode", "vs decode", "reduced-scale", "scaling", "RSS",
                 "targets"):
        assert text in result.output
    data = json.loads(out.read_text())
    assert {(c["format"], c["workers"]) for c in data["cells"]} == {
        (f, w) for f in ("sqlite", "jpg", "video", "hdf5", "decode") for w in (0, 2)}
    assert all(c["clips"] == 8 for c in data["cells"])
    assert data["scaling"]["speedup"] > 0 and data["rss"]["clips"] == 16
    # Every video stays open by default (6 here); the frame interval is recorded and shown.
    assert data["max_open"] == 6 and data["frame_interval"] == "1,3" and "frame interval 1,3," in result.output
    assert {t["target"].split(" (")[0] for t in data["targets"]} >= {"sqlite / jpg", "2 workers / 1 worker"}


def test_benchmark_io_rejects_bad_options(tiny_dataset):
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "--formats", "sqlite,tiff"])
    assert result.exit_code == 2 and "tiff" in result.output
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "--frame-interval", "two"])
    assert result.exit_code == 2 and "frame interval 'two'" in result.output


def test_target_values_never_print_across_the_threshold():
    from vidnet.cli.bench import shown_value

    assert shown_value(0.9961, 1.0) == "0.996"  # would print "1.00" next to "not met"
    assert shown_value(0.9496, 0.95) == "0.9496"
    assert shown_value(0.9449, 0.95) == "0.94"
    assert shown_value(1.004, 1.0) == "1.00"
    assert shown_value(0.97, 0.95) == "0.97"
    assert shown_value(2.06, 1.7) == "2.06"
