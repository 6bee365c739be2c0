"""VideoClipDataset: shapes, one SQL statement per clip, lazy per-process stores, seeds, bad data."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import pytest
import torch
from torch.utils.data import DataLoader

from vidnet.data import dataset as dataset_module
from vidnet.data.dataset import VideoClipDataset, decode_size
from vidnet.data.index import read_index, write_index
from vidnet.data.preprocessing import KINETICS_MEAN, KINETICS_STD, normalize
from vidnet.data.sampling import CentreClip, MultiClip, RandomClip
from vidnet.data.store import ClipReader, FrameStore
from vidnet.data.transforms import ClipAugment, ClipEval, EvalConfig, TrainAugmentConfig, train_preset
from vidnet.errors import ClipError, UsageError

# Small transforms keep the tests fast (the presets resize to 294 pixels first).
AUG = ClipAugment(train_preset("hmdb51", size=(32, 32), resize_short=48, crop_size=40))
EVAL = ClipEval(EvalConfig(resize_short=48, crop_size=40))


def _ds(root, split="train", **kw):
    kw.setdefault("transform", AUG if split == "train" else EVAL)
    kw.setdefault("size", (32, 32))
    kw.setdefault("num_frames", 6)
    return VideoClipDataset(root, split, **kw)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_log():
    handler = _Warnings()
    logger = logging.getLogger("vidnet.data.dataset")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_sample_contract(tiny_dataset):
    ds = _ds(tiny_dataset, return_meta=True)
    assert len(ds) == 4 and ds.num_classes == 2 and ds.labels == {"move_left": 0, "move_right": 1}
    assert ds.hflip is False and [r.split for r in ds.rows] == ["train"] * 4  # left and right are classes
    s = ds[1]
    assert s["clip"].shape == (3, 6, 32, 32) and s["clip"].dtype == torch.uint8 and s["clip"].is_contiguous()
    assert s["label"] == ds.labels[ds.rows[1].label] and s["index"] == 1
    assert s["video_id"] == ds.rows[1].id and s["frames"].dtype == torch.int64 and s["frames"].shape == (6,)
    # multigrid key: (index, num_frames, height, width) overrides the defaults
    assert ds[(2, 4, 24, 16)]["clip"].shape == (3, 4, 24, 16)
    f = _ds(tiny_dataset, output="float")[0]["clip"]
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1
    assert len(_ds(tiny_dataset, None)) == 6 and len(_ds(tiny_dataset, "val")) == 2
    assert {r.label for r in _ds(tiny_dataset, None, classes=["move_right"]).rows} == {"move_right"}
    with pytest.raises(UsageError, match="unknown class"):
        _ds(tiny_dataset, classes=["jump"])
    with pytest.raises(IndexError):
        ds[4]


def test_default_sampler_and_transform_follow_split_and_dataset_json(tiny_dataset, tmp_path):
    train, val = VideoClipDataset(tiny_dataset, "train"), VideoClipDataset(tiny_dataset, "val")
    assert isinstance(train.sampler, RandomClip) and isinstance(val.sampler, CentreClip)
    assert isinstance(train.transform, ClipAugment) and train.transform.config.flip is False  # the sample's
    assert isinstance(val.transform, ClipEval)
    root = tmp_path / "d"
    shutil.copytree(tiny_dataset, root)
    (root / "dataset.json").unlink()
    assert VideoClipDataset(root, "train").transform.config.flip  # no dataset.json: flips allowed
    (root / "dataset.json").write_text('{"name": "jester", "num_classes": 2, "hflip": false, "media": "frames"}')
    ds = VideoClipDataset(root, "train")
    assert ds.hflip is False and ds.transform.config.flip is False and ds.transform.config.crop == "multiscale"
    assert ds[0]["clip"].shape == (3, 16, 112, 112)


def test_frames_in_order_and_pixels_match_the_store(tiny_dataset):
    identity = ClipEval(EvalConfig(resize_short=None, crop="none"))
    ds = VideoClipDataset(tiny_dataset, "val", num_frames=5, size=(48, 64), transform=identity, return_meta=True)
    s = ds[0]
    with FrameStore(tiny_dataset / ds.rows[0].path) as store:
        expected = store.get_frames(s["frames"].numpy())
    assert s["frames"].tolist() == CentreClip().sample(ds.rows[0].n_frames, 5).tolist()
    assert torch.equal(s["clip"], torch.from_numpy(expected).permute(3, 0, 1, 2))


def test_multi_view_sampler_gives_n_clips(tiny_dataset):
    ds = _ds(tiny_dataset, "val", sampler=MultiClip(num_clips=3), return_meta=True)
    s = ds[0]
    assert s["clip"].shape == (3, 3, 6, 32, 32) and s["frames"].shape == (3, 6)
    three = ClipEval(EvalConfig(resize_short=48, crop_size=40, crop="three"))
    assert _ds(tiny_dataset, "val", sampler=MultiClip(num_clips=2), transform=three)[0]["clip"].shape == (
        6, 3, 6, 32, 32)


def test_one_sql_statement_per_clip(tiny_dataset, monkeypatch):
    statements: list[str] = []
    original = ClipReader.__init__

    def traced(self, path):
        original(self, path)
        self._con.set_trace_callback(statements.append)

    monkeypatch.setattr(ClipReader, "__init__", traced)
    ds = _ds(tiny_dataset, sampler=MultiClip(num_clips=4), num_frames=8)  # 32 indices, duplicates included
    for i in (0, 0, 1, 0, 2):
        ds[i]  # the first clip of a video too: opening a store runs no query
    # One SELECT per clip; the first read of a store also sets its page cache (two PRAGMAs, no query).
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    pragmas = [s for s in statements if s.lstrip().upper().startswith("PRAGMA")]
    assert len(selects) == 5 and len(pragmas) == 2 * 3 and len(statements) == 11


def test_default_max_open_follows_the_open_file_limit(tiny_dataset, monkeypatch):
    import resource

    from vidnet.data.dataset import default_max_open

    for soft, expected in ((1024, 256), (20000, 1024), (64, 32), (resource.RLIM_INFINITY, 1024)):
        monkeypatch.setattr(resource, "getrlimit", lambda _, soft=soft: (soft, resource.RLIM_INFINITY))
        assert default_max_open() == expected
    # By default every video of the dataset stays open (fewer than the limit here), once per process.
    assert _ds(tiny_dataset, None).max_open == len({r.path for r in _ds(tiny_dataset, None).rows})


def test_stores_lru_bounded_and_reopened_after_fork(tiny_dataset):
    ds = _ds(tiny_dataset, None, max_open=2)
    for i in range(len(ds)):
        ds[i]
        assert len(ds._stores) <= 2
    assert list(ds._stores) == [ds.rows[4].path, ds.rows[5].path]  # the most recently used
    parent = dict(ds._stores)
    ds._pid = -1  # as seen from a forked child: the parent's connections must not be used
    ds[0]
    assert list(ds._stores) == [ds.rows[0].path] and ds._stores[ds.rows[0].path] is not parent.get(ds.rows[0].path)
    import pickle

    assert pickle.loads(pickle.dumps(ds))._stores == {}


def _batches(ds, workers):
    loader = DataLoader(ds, batch_size=3, num_workers=workers, shuffle=False)
    out = [(b["clip"], b["frames"], b["index"]) for b in loader]
    return [torch.cat(x) for x in zip(*out, strict=True)]


def test_same_batches_with_0_and_2_workers_and_epochs_differ(tiny_dataset):
    ds = _ds(tiny_dataset, None, seed=5, return_meta=True, sampler=RandomClip(interval=[1, 2]), transform=AUG)
    ds.set_epoch(1)
    ref = _batches(ds, 0)
    got = _batches(ds, 2)
    assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))
    ds.set_epoch(2)
    assert not torch.equal(_batches(ds, 0)[0], ref[0])


def test_set_epoch_reaches_persistent_workers(tiny_dataset):
    ds = _ds(tiny_dataset, seed=1)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    ds.set_epoch(0)
    first = next(iter(loader))["clip"]
    ds.set_epoch(7)
    seventh = next(iter(loader))["clip"]
    assert not torch.equal(first, seventh)
    assert torch.equal(seventh, torch.stack([ds[i]["clip"] for i in range(4)]))


def test_decode_size_uses_power_of_two_scales_only_when_lossless():
    stored = (240, 320)
    # resize short side to 60 then crop 60: a quarter-size decode (60x80) still holds everything
    assert decode_size(ClipEval(EvalConfig(resize_short=60, crop_size=60)), stored, (60, 60)) == (60, 80)
    # the crop shrinks 224 -> 56 after resizing to 256: needs a short side of 64, more than 1/4 (60) holds
    assert decode_size(ClipEval(EvalConfig(resize_short=256, crop_size=224)), stored, (56, 56)) == (120, 160)
    assert decode_size(ClipEval(EvalConfig(resize_short=256, crop_size=224)), stored, (48, 48)) == (60, 80)
    assert decode_size(ClipEval(EvalConfig(resize_short=256, crop_size=224)), stored, (104, 104)) == (120, 160)
    assert decode_size(ClipEval(EvalConfig(resize_short=256, crop_size=224)), stored, (112, 112)) is None
    assert decode_size(ClipEval(EvalConfig(resize_short=256, crop_size=224)), stored, (224, 224)) is None
    aug = ClipAugment(TrainAugmentConfig(size=(80, 80), resize_short=128, crop_size=112, photometric=None))
    assert decode_size(aug, stored, (80, 80)) == (120, 160)  # 128 * 80/112 = 92 <= 120
    rrc = ClipAugment(TrainAugmentConfig(resize_short=100, crop="random_resized", photometric=None))
    assert decode_size(rrc, stored, (32, 32)) == (120, 160)  # bounded by the first resize only
    assert decode_size(ClipAugment(TrainAugmentConfig(resize_short=None, crop="none", photometric=None)),
                       stored, (30, 40)) == (30, 40)
    assert decode_size(lambda clip, rng, size: clip, stored, (10, 10)) is None


def test_reduced_scale_decode_is_used_and_close_to_full(tiny_dataset, monkeypatch):
    small = ClipEval(EvalConfig(resize_short=24, crop_size=24))  # stored 48x64 -> 1/2 decode
    ds = VideoClipDataset(tiny_dataset, "val", num_frames=4, size=24, transform=small)
    seen = []
    original = dataset_module.decode_frames

    def spy(path, idx, blobs, min_size):
        seen.append(min_size)
        return original(path, idx, blobs, min_size)

    monkeypatch.setattr(dataset_module, "decode_frames", spy)
    reduced = ds[0]["clip"].float()
    assert seen == [(24, 32)]
    monkeypatch.setattr(ds, "decode_size", lambda *a: None)
    full = ds[0]["clip"].float()
    assert seen[-1] is None and reduced.shape == full.shape
    assert (reduced - full).abs().mean() < 6  # the same picture, up to resampling


def test_normalize_on_device():
    clips = torch.full((2, 3, 4, 5, 5), 255, dtype=torch.uint8)
    out = normalize(clips)
    want = (1 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)
    assert out.dtype == torch.float32 and torch.allclose(out[0, :, 0, 0, 0], want)
    assert torch.allclose(normalize(clips.float() / 255), out)
    with pytest.raises(UsageError):
        normalize(torch.zeros(2, 4, 4, 5, 5))


# -- bad data ---------------------------------------------------------------------------------------------


def _damage(root, case: str, row) -> None:
    db = root / row.path / "frames.db"
    if case == "missing":
        db.unlink()
    elif case == "unreadable":
        db.write_bytes(b"this is not a database" * 64)
    elif case == "corrupt":
        with sqlite3.connect(db) as con:
            con.execute("UPDATE Images SET frames = X'FFD8FFE000104A464946'")
    elif case == "short_index":  # index.csv claims more frames than the store holds
        rows = read_index(root / "index.csv")
        for r in rows:
            if r.path == row.path:
                r.n_frames += 5
        write_index(root / "index.csv", rows)
    elif case == "short_rows":  # the store's meta claims frames whose rows are gone (truncated store)
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM Images WHERE rowid > 2")


CASES = {"missing": "missing", "unreadable": "unreadable", "corrupt": "corrupt", "short_index": "short",
         "short_rows": "short"}


@pytest.fixture
def damaged(tiny_dataset, tmp_path, request):
    root = tmp_path / "d"
    shutil.copytree(tiny_dataset, root)
    row = VideoClipDataset(root, None).rows[2]
    _damage(root, request.param, row)
    return root, row, request.param


@pytest.mark.parametrize("damaged", list(CASES), indirect=True)
def test_bad_video_raises_a_clip_error_naming_it(damaged):
    root, row, case = damaged
    ds = _ds(root, None, sampler=CentreClip() if case != "short_rows" else MultiClip(num_clips=2))
    with pytest.raises(ClipError, match=row.path) as info:
        ds[2]
    assert info.value.video == row.path and info.value.reason == CASES[case]
    assert ds[1]["index"] == 1  # the others still load
    assert ds.bad_data_report().failed == [(2, row.path, CASES[case])]


@pytest.mark.parametrize("damaged", list(CASES), indirect=True)
def test_skip_policy_replaces_deterministically_warns_and_reports(damaged, warnings_log):
    root, row, case = damaged
    ds = _ds(root, None, bad_data="skip", max_bad_fraction=0.5, return_meta=True,
             sampler=CentreClip() if case != "short_rows" else MultiClip(num_clips=2))
    s = ds[2]
    assert s["index"] == 3 and s["video_id"] == ds.rows[3].id  # the next index, not a random one
    assert torch.equal(s["clip"], ds[2]["clip"])  # the same replacement every time
    assert any(row.path in m and CASES[case] in m for m in warnings_log)
    report = ds.bad_data_report()
    assert report.failed == [(2, row.path, CASES[case])] and report.count == 1 and report.fraction == 1 / 6
    assert row.path in str(report)
    # Through worker processes the main process still sees the failure; the next epoch starts clean.
    ds.set_epoch(1)
    assert ds.bad_data_report().count == 0 and any("1 of 6 videos" in m for m in warnings_log)
    batch = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    assert batch["index"].tolist() == [0, 1, 3, 3, 4, 5]
    assert ds.bad_data_report().failed == [(2, row.path, CASES[case])]


@pytest.mark.parametrize("damaged", ["corrupt"], indirect=True)
def test_skip_policy_aborts_above_max_bad_fraction(damaged):
    root, row, _ = damaged
    ds = _ds(root, None, bad_data="skip", max_bad_fraction=0.1)
    with pytest.raises(ClipError, match=r"1 of 6 videos \(16.7%\) failed in epoch 0, more than max_bad_fraction=0.1"):
        ds[2]


def test_convert_carries_dataset_json_to_the_dataset(tmp_path):
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    make_sample_dataset(tmp_path / "v", SampleOptions(classes=2, videos_per_class=1, min_frames=4, max_frames=4,
                                                      width=32, height=32, workers=1))
    (tmp_path / "v" / "dataset.json").write_text('{"name": "jester", "num_classes": 2, "hflip": false}')
    convert_dataset(tmp_path / "v", tmp_path / "f", ConvertOptions(workers=1))
    assert VideoClipDataset(tmp_path / "f", None).hflip is False


def test_sample_dataset_is_never_flipped(tmp_path):
    # A horizontal flip turns move_left into move_right and rotate_cw into rotate_ccw, keeping the label:
    # `vidnet sample`, `vidnet convert`, `vidnet train` must not flip (it did, outside the quickstart).
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    make_sample_dataset(tmp_path / "v", SampleOptions(classes=2, videos_per_class=1, min_frames=4, max_frames=4,
                                                      width=32, height=32, workers=1))
    convert_dataset(tmp_path / "v", tmp_path / "f", ConvertOptions(workers=1))
    ds = VideoClipDataset(tmp_path / "f", "train", num_frames=2, size=(16, 16))
    assert ds.hflip is False and ds.transform.config.flip is False


@pytest.mark.parametrize("damaged", ["corrupt"], indirect=True)
def test_bad_video_in_a_worker_is_one_line(damaged):
    # DataLoader re-raises a worker's error with the worker's whole traceback as its message (24 lines for
    # `vidnet train --bad-data raise`); the error keeps the one line naming the video.
    root, row, _ = damaged
    ds = _ds(root, None)
    with pytest.raises(ClipError) as info:
        list(DataLoader(ds, batch_size=6, num_workers=1))
    assert str(info.value).startswith(f"{row.path}: corrupt frame") and "\n" not in str(info.value)
    assert "Original Traceback" in info.value.worker_traceback
