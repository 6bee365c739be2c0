"""benchmark-io on the tiny dataset: every format gives the same frames; the command prints and writes JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.benchmark import BenchmarkOptions, Spread, parse_shape, read_hdf5_frames, rss_bytes, verdict
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


@pytest.fixture(scope="module")
def bench_run(tiny_dataset, tmp_path_factory):
    """One run over every format (2 rounds, reduced-scale decode), and its scratch folder of comparison copies,
    shared by the tests of this module (building the copies is most of a run's time)."""
    from vidnet.data import benchmark as b

    scratch = tmp_path_factory.mktemp("bench") / "s"
    report_opts = BenchmarkOptions(shapes=[(2, 4, 32)], workers=(0,), batches=1, repeat=2, scratch=scratch,
                                   reduced=True)
    return b.run_benchmark(tiny_dataset, report_opts), scratch


def test_run_benchmark_all_formats_tiny(bench_run):
    report, scratch = bench_run
    assert [c.format for c in report.cells] == ["sqlite", "jpg", "hdf5", "hdf5-jpeg", "video", "decode"]
    assert all(c.clips == 2 and c.clips_per_s > 0 and len(c.round_clips_per_s) == 2 for c in report.cells)
    assert all(c.clips_per_s_low <= c.clips_per_s <= c.clips_per_s_high for c in report.cells)
    decode = next(c for c in report.cells if c.format == "decode")
    assert (decode.ratio_to_decode, decode.ratio_low, decode.ratio_high) == (1.0, 1.0, 1.0)
    assert report.stored_size == (48, 64) and report.videos == 6 and report.rounds == 2
    sizes = {c.format: c.bytes_per_video for c in report.cells}
    assert sizes["hdf5"] > sizes["sqlite"] > sizes["jpg"] == sizes["decode"] > sizes["video"]
    assert sizes["hdf5-jpeg"] > sizes["jpg"]
    per_frame = {c.format: c.bytes_per_frame for c in report.cells}
    assert per_frame["hdf5"] > 48 * 64 * 3 > per_frame["jpg"] > 0
    assert (scratch / "jpg").is_dir() and (scratch / "video").is_dir() and (scratch / "hdf5-jpeg").is_dir()
    assert "re-encoded" in report.video_source
    assert report.reduced_decode["1/2_speedup"] > 0
    assert report.reduced_decode["1/2_speedup_low"] <= report.reduced_decode["1/2_speedup_high"]


def test_formats_read_the_same_frames(tiny_dataset, bench_run):
    from vidnet.data import benchmark as b
    from vidnet.data.transforms import ClipEval, EvalConfig

    s = bench_run[1]
    ds0 = b._SqliteDataset(tiny_dataset, split=None)
    blobs = {r.path: ds0._store(r).get_bytes(range(r.n_frames)) for r in ds0.rows}
    common = {"split": None, "num_frames": 5, "size": (48, 64),
              "transform": ClipEval(EvalConfig(resize_short=None, crop="none"))}
    datasets = {
        "sqlite": b._SqliteDataset(tiny_dataset, **common),
        "jpg": b._JpgDataset(tiny_dataset, folder=s / "jpg", **common),
        "hdf5": b._Hdf5Dataset(tiny_dataset, folder=s / "hdf5", **common),
        "hdf5-jpeg": b._Hdf5JpegDataset(tiny_dataset, folder=s / "hdf5-jpeg", **common),
        "video": b._VideoDataset(tiny_dataset, files={r.path: s / "video" / f"{r.path}.mp4" for r in ds0.rows},
                                 **common),
        "decode": b._DecodeDataset(tiny_dataset, blobs=blobs, **common),
    }
    for i in range(len(ds0)):
        ref = datasets["sqlite"][i]["clip"]
        for fmt in ("jpg", "hdf5", "hdf5-jpeg", "decode"):
            assert datasets[fmt][i]["clip"].equal(ref), fmt
        # H.264 re-encoding is lossy: the decoded frames must be closer to the stored frames of the same
        # numbers than to their neighbours'.
        frames = datasets["sqlite"].sampler.sample(ds0.rows[i].n_frames, 5, None)
        store = ds0._store(ds0.rows[i])
        video = datasets["video"][i]["clip"].permute(1, 2, 3, 0).float().numpy()
        for f, got in zip(frames, video, strict=True):
            errors = {g: np.abs(store.get_frames([g])[0] - got).mean() for g in range(ds0.rows[i].n_frames)}
            assert min(errors, key=errors.get) == f and errors[f] < 6


def test_hdf5_frames_are_read_without_fancy_indexing(tiny_dataset, bench_run, monkeypatch):
    # h5py turns ds[[i, j, ...]] into one hyperslab per index: 270x slower than single-frame reads on a
    # chunked dataset. The benchmark's hdf5 reader must never index with a list.
    import h5py

    from vidnet.data import benchmark as b

    seen = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kw):
        seen.append(args)
        return original(self, args, *rest, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    ds = b._Hdf5Dataset(tiny_dataset, folder=bench_run[1] / "hdf5", split=None, num_frames=6, size=(48, 64))
    for i in range(len(ds)):
        assert ds[i]["clip"].shape == (3, 6, 48, 64)
    def fancy(a):
        return isinstance(a, list | np.ndarray) or isinstance(a, tuple) and any(isinstance(x, list | np.ndarray)
                                                                                 for x in a)

    assert not [a for a in seen if fancy(a)]


@pytest.mark.parametrize("fmt", ["hdf5", "hdf5-jpeg"])
def test_hdf5_formats_report_a_frame_past_the_file_as_a_short_clip(tiny_dataset, bench_run, fmt):
    # Both HDF5 layouts open and read through one reader: a frame the file lacks is the same ClipError
    # (reason "short") as in the store, never a bare IndexError from h5py (the JPEG layout's, before).
    from vidnet.data import benchmark as b
    from vidnet.errors import ClipError

    cls = {"hdf5": b._Hdf5Dataset, "hdf5-jpeg": b._Hdf5JpegDataset}[fmt]
    ds = cls(tiny_dataset, folder=bench_run[1] / fmt, split=None, num_frames=2, size=(48, 64))
    n = ds.rows[0].n_frames
    assert ds.read_frames(0, np.array([0, n - 1]), (48, 64)).shape[0] == 2
    with pytest.raises(ClipError, match=ds.rows[0].path) as err:
        ds.read_frames(0, np.array([0, n + 5]), (48, 64))
    assert err.value.reason == "short"


@pytest.mark.parametrize("layout", ["chunked", "contiguous", "compressed"])
def test_read_hdf5_frames_every_layout(tmp_path, layout):
    import h5py

    data = np.random.default_rng(0).integers(0, 256, (20, 6, 8, 3), dtype=np.uint8)
    kw = {"chunked": {"chunks": (1, 6, 8, 3)}, "contiguous": {}, "compressed": {"chunks": (2, 6, 8, 3),
                                                                               "compression": "gzip"}}[layout]
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("video", data=data, **kw)
    with h5py.File(tmp_path / "v.h5", "r") as f:
        ds = f["video"]
        for idx in ([3, 5, 7, 9], [9, 3, 3, 0], [4, 5, 6, 7], [19], list(range(20))):
            assert np.array_equal(read_hdf5_frames(ds, idx), data[idx]), idx
        with pytest.raises(IndexError, match="frame 20 out of range: the file holds 20 frames"):
            read_hdf5_frames(ds, [2, 20])


def test_spread_and_verdict():
    s = Spread.of([1.0, 1.3, 0.9, 1.1, 1.2])
    assert (s.median, s.low, s.high) == (1.1, 0.9, 1.3)
    assert verdict(Spread(1.1, 1.0, 1.2), 1.0) == "met"
    assert verdict(Spread(1.1, 0.9, 1.2), 1.0) == "within noise"  # rounds on both sides: no flip-flopping
    assert verdict(Spread(0.9, 0.8, 0.99), 1.0) == "not met"
    assert verdict(Spread(0.3, 0.3, 0.3), 50.0, lower_is_better=True) == "met"
    assert verdict(Spread(60, 40, 70), 50.0, lower_is_better=True) == "within noise"
    assert verdict(Spread(60, 55, 70), 50.0, lower_is_better=True) == "not met"


def test_video_format_decodes_the_sources_the_index_names(tiny_dataset, tmp_path):
    from vidnet.data.benchmark import _source_videos
    from vidnet.data.dataset import VideoClipDataset

    rows = VideoClipDataset(tiny_dataset, None).rows
    videos = tiny_dataset.parent / "videos"
    found = _source_videos(rows, tiny_dataset, videos)
    assert found == {r.path: videos / r.extra["source"] for r in rows}
    assert _source_videos(rows, tiny_dataset, None) is None  # not relative to the dataset: re-encode instead
    with pytest.raises(UsageError, match="no source video for"):
        _source_videos(rows, tiny_dataset, tmp_path)
    hostile = [type(rows[0])(**{**rows[0].__dict__, "extra": {"source": "../../etc/passwd"}})]
    with pytest.raises(UsageError, match="leads outside"):
        _source_videos(hostile, tiny_dataset, videos)
    report = _run_video_only(tiny_dataset, tmp_path, videos)
    assert report.video_source == f"the dataset's source videos ({videos})"
    assert not (tmp_path / "s" / "video").exists()  # nothing re-encoded


def _run_video_only(root, tmp_path, videos):
    from vidnet.data.benchmark import run_benchmark

    return run_benchmark(root, BenchmarkOptions(shapes=[(2, 4, 32)], workers=(0,), batches=1, repeat=1,
                                                formats=["video", "decode"], scratch=tmp_path / "s", videos=videos))


def test_benchmark_io_command(tiny_dataset, bench_run, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "--shape", "4x4x32", "--batches", "2",
                                      "--scratch", str(bench_run[1]),
                                      "--workers", "0", "--repeat", "2", "-q",
                                      "--frame-interval", "1,3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("sqlite", "jpg", "video", "hdf5", "hdf5-jpeg", "decode", "vs decode", "KB/frame",
                 "median of 2 interleaved rounds", "targets", "load average"):
        assert text in result.output, text
    assert "issue" not in result.output
    data = json.loads(out.read_text())
    assert {(c["format"], c["workers"]) for c in data["cells"]} == {
        (f, 0) for f in ("sqlite", "jpg", "hdf5", "hdf5-jpeg", "video", "decode")}
    assert all(c["clips"] == 8 and len(c["round_clips_per_s"]) == 2 for c in data["cells"])
    assert not data["scaling"] and not data["rss"] and not data["reduced_decode"]  # --full's
    # Every video stays open by default (6 here); the frame interval is recorded and shown.
    assert data["max_open"] == 6 and data["frame_interval"] == "1,3" and "frame interval 1,3," in result.output
    assert "sqlite / jpg" in {t["target"] for t in data["targets"]}  # the 1-worker targets: test_targets_*
    assert {t["verdict"] for t in data["targets"]} <= {"met", "not met", "within noise"}
    assert all(t["low"] <= t["value"] <= t["high"] for t in data["targets"])


def test_benchmark_io_is_quick_by_default_and_full_on_request(tiny_dataset, bench_run, monkeypatch):
    from vidnet.data import benchmark as b

    seen = []
    real = b.run_benchmark

    def spy(root, opts, **kw):
        seen.append(opts)
        small = BenchmarkOptions(**{**opts.__dict__, "shapes": [(2, 4, 32)], "batches": 1, "repeat": 1,
                                    "workers": (0,), "formats": ("sqlite", "decode"), "scaling_shape": (2, 4, 32),
                                    "rss_clips": min(opts.rss_clips, 4)})
        return real(root, small, **kw)

    monkeypatch.setattr(b, "run_benchmark", spy)
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "-q", "--scratch", str(bench_run[1])])
    assert result.exit_code == 0, result.output
    quick = seen[-1]
    assert list(quick.shapes) == [(96, 16, 158)] and list(quick.workers) == [1]
    assert list(quick.formats) == ["sqlite", "jpg", "hdf5", "hdf5-jpeg", "video", "decode"]
    assert (quick.scaling, quick.rss_clips, quick.reduced, quick.repeat) == (False, 0, False, 5)
    assert "scaling" not in result.output and "RSS" not in result.output
    result = CliRunner().invoke(app, ["benchmark-io", str(tiny_dataset), "-q", "--full", "--scratch",
                                      str(bench_run[1])])
    assert result.exit_code == 0, result.output
    full = seen[-1]
    assert list(full.shapes) == [(1536, 4, 80), (384, 8, 112), (96, 16, 158), (48, 16, 224)]
    assert (full.scaling, full.rss_clips, full.reduced) == (True, 2000, True)
    assert "scaling" in result.output and "RSS" in result.output and "reduced-scale" in result.output
    assert "2 workers / 1 worker" in result.output


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


def test_targets_are_judged_round_by_round():
    from vidnet.data.benchmark import BenchmarkReport, CellResult, _targets

    def cell(fmt, rounds, decode):
        ratios = [a / b for a, b in zip(rounds, decode, strict=True)]
        s, r = Spread.of(rounds), Spread.of(ratios)
        return CellResult(fmt, 96, 16, 158, 1, 96, rounds, s.median, s.low, s.high, 0, 0, 1, 1, r.median, r.low,
                          r.high)

    decode = [100.0, 50.0, 80.0]
    report = BenchmarkReport("d", 1, 1, (1, 1), "-", cells=[
        cell("sqlite", [97.0, 49.0, 78.0], decode),   # 0.97, 0.98, 0.975 of decode: every round >= 0.95
        cell("jpg", [99.0, 45.0, 79.0], decode),      # sqlite / jpg: 0.98, 1.09, 0.99: both sides of 1.0
        cell("hdf5", [90.0, 40.0, 70.0], decode),     # 0.9, 0.8, 0.875: no round reaches 1.0
        cell("decode", decode, decode)])
    got = {t["target"].split(" (")[0]: (round(t["value"], 3), t["verdict"]) for t in _targets(report)}
    assert got == {"sqlite / decode": (0.975, "met"), "sqlite / jpg": (0.987, "within noise"),
                   "hdf5 raw / decode": (0.875, "not met")}
