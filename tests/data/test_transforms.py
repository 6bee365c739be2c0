"""Clip-consistent augmentation: identical parameters on every frame, reproducible seeds, crop positions, presets."""

from __future__ import annotations

import pickle
from dataclasses import replace

import albumentations as A
import numpy as np
import pytest

from vidnet.data.sampling import worker_rng
from vidnet.data.transforms import (
    PRESET_FAMILIES,
    ClipAugment,
    ClipEval,
    EvalConfig,
    MultiScaleCornerCrop,
    PhotometricConfig,
    TrainAugmentConfig,
    eval_preset,
    train_preset,
)
from vidnet.errors import UsageError, VidnetError


def textured_frame(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """A frame with structure (gradients plus noise) so that every transform visibly changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 3) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def still_clip(t: int = 6, h: int = 40, w: int = 56) -> np.ndarray:
    return np.repeat(textured_frame(h, w)[None], t, axis=0)


def coord_frame(h: int, w: int) -> np.ndarray:
    """Channel 0 = column, channel 1 = row: a crop's content tells where it came from."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8)


ALL_ON = PhotometricConfig(p_any=1.0, p_each=1.0, multiply=(0.8, 1.2), gamma=(0.85, 1.15))
SINGLE_ITEMS = {
    "blur": dict(blur_sigma=(0.1, 0.3)),
    "channel_add": dict(channel_add=(-5, 15)),
    "noise": dict(noise_std=(0.0, 0.3)),
    "colour": dict(colour=(1.2, 1.6)),
    "motion_blur": dict(motion_blur=(3, 7)),
    "hue_saturation": dict(hue_saturation=16),
    "contrast": dict(contrast=(0.85, 1.115)),
    "perspective": dict(perspective=(0.02, 0.05)),
    "rotate": dict(rotate=10),
    "multiply": dict(multiply=(0.8, 1.2)),
    "gamma": dict(gamma=(0.85, 1.15)),
}
NONE_ENABLED = dict(
    blur_sigma=None,
    channel_add=None,
    noise_std=None,
    colour=None,
    motion_blur=None,
    hue_saturation=None,
    contrast=None,
    perspective=None,
    rotate=None,
)


@pytest.mark.parametrize("item", sorted(SINGLE_ITEMS))
def test_each_photometric_item_is_identical_across_frames(item):
    photometric = PhotometricConfig(p_any=1.0, p_each=1.0, **{**NONE_ENABLED, **SINGLE_ITEMS[item]})
    aug = ClipAugment(TrainAugmentConfig(size=40, resize_short=None, crop="none", flip=False, photometric=photometric))
    clip = still_clip(h=40, w=40)
    changed = False
    for seed in range(4):
        out = aug(clip, seed)
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], f) for f in out[1:]), f"{item} differs across frames (seed {seed})"
        changed |= not np.array_equal(out[0], clip[0])
    if item != "blur":  # sigma <= 0.3 on a 3x3 kernel can round back to the input
        assert changed, f"{item} never changed the frame: the test would not catch anything"


@pytest.mark.parametrize(
    "config",
    [
        TrainAugmentConfig(size=(24, 32), resize_short=48, crop="random", crop_size=40, photometric=ALL_ON),
        TrainAugmentConfig(size=24, resize_short=None, crop="random_resized", photometric=ALL_ON),
        TrainAugmentConfig(size=24, resize_short=None, crop="multiscale", scales=(20, 28, 36), photometric=ALL_ON),
        TrainAugmentConfig(size=24, resize_short=36, centre_crop=36, crop="random", crop_size=None, brightness=15),
        train_preset("ucf101", size=24, resize_short=48, crop_size=32),
        train_preset("kinetics", size=24, resize_short=40, centre_crop=40),
        train_preset("jester", size=24),
        train_preset("mict", size=24),
    ],
    ids=["crop+all", "rrc+all", "multiscale+all", "centre+brightness", "ucf101", "kinetics", "jester", "mict"],
)
def test_whole_pipelines_keep_a_still_clip_still(config):
    aug = ClipAugment(config)
    clip = still_clip()
    for seed in range(6):
        out = aug(clip, seed)
        assert out.shape == (6, *config.size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
        assert all(np.array_equal(out[0], f) for f in out[1:])


def test_same_seed_same_parameters_different_seed_different():
    aug = ClipAugment(train_preset("hmdb51", size=24, resize_short=48, crop_size=32))
    clip = np.stack([textured_frame(seed=s) for s in range(5)])
    a = aug(clip, worker_rng(3, 0, 17))
    b = aug(clip, worker_rng(3, 0, 17))
    assert np.array_equal(a, b)
    outs = [aug(clip, worker_rng(3, 0, i)).tobytes() for i in range(8)]
    assert len(set(outs)) == 8


def test_parameters_do_not_depend_on_clip_length():
    # multigrid changes T: a seed must give the same crop/flip/colours to the frames both clips share
    aug = ClipAugment(train_preset("ucf101", size=24, resize_short=48, crop_size=32))
    long = np.stack([textured_frame(seed=s) for s in range(8)])
    for seed in range(5):
        assert np.array_equal(aug(long, seed)[:4], aug(long[:4], seed))


def test_draws_one_value_from_the_callers_generator():
    aug = ClipAugment(train_preset("ucf101", size=24, resize_short=48, crop_size=32))
    rng, twin = np.random.default_rng(9), np.random.default_rng(9)
    aug(still_clip(), rng)
    twin.integers(1 << 63)
    assert rng.integers(1 << 30) == twin.integers(1 << 30)


def test_item_decisions_are_independent():
    # albumentations' set_random_seed would give every child the same first draw, so all p=0.4 items would
    # fire together or not at all; the shared generator must give mixed subsets at about p_each.
    photometric = PhotometricConfig(p_any=1.0, p_each=0.4)
    aug = ClipAugment(TrainAugmentConfig(size=16, resize_short=None, crop="none", flip=False, photometric=photometric))
    clip = still_clip(t=2, h=16, w=16)
    block = aug.pipeline((16, 16)).transforms[-1]
    leaves = {id(t): [t] if isinstance(t, A.BasicTransform) else list(t.transforms) for t in block.transforms}
    counts = []
    for seed in range(150):
        for group in leaves.values():
            for leaf in group:
                leaf.params = {}  # a OneOf child that was not called keeps its previous params
        aug(clip, seed)
        counts.append(sum(any(leaf.params for leaf in group) for group in leaves.values()))
    n_items = len(block.transforms)
    assert n_items == 8
    assert len(set(counts)) >= 5
    assert 0.3 < np.mean(counts) / n_items < 0.5


def test_flip_off_for_jester_and_on_for_ucf101():
    assert train_preset("jester").flip is False
    assert train_preset("20BN-Jester").flip is False
    assert train_preset("UCF-101").flip is True
    assert not any(isinstance(t, A.HorizontalFlip) for t in ClipAugment(train_preset("jester")).pipeline((112, 112)))
    clip = np.repeat(coord_frame(16, 16)[None], 2, axis=0)
    plain = dict(size=16, resize_short=None, crop="none", photometric=None)
    jester = ClipAugment(train_preset("jester", **plain))
    ucf = ClipAugment(train_preset("ucf101", **plain))
    assert all(np.array_equal(jester(clip, s), clip) for s in range(30))
    flipped = [np.array_equal(ucf(clip, s), clip[:, :, ::-1]) for s in range(30)]
    assert 5 < sum(flipped) < 25 and all(f or np.array_equal(ucf(clip, s), clip) for s, f in enumerate(flipped))


def test_preset_numbers_from_the_reference():
    ucf, hmdb, kin = train_preset("ucf101"), train_preset("hmdb51"), train_preset("kinetics-700")
    assert (ucf.resize_short, ucf.crop, ucf.crop_size) == (294, "random", 224)
    assert (ucf.photometric.p_any, ucf.photometric.p_each) == (0.65, 0.3)
    assert (hmdb.photometric.p_any, hmdb.photometric.p_each) == (0.8, 0.4)
    assert train_preset("diving48") == hmdb
    assert (kin.resize_short, kin.centre_crop, kin.crop_size) == (384, 384, None)
    assert (kin.photometric.p_any, kin.photometric.p_each) == (0.9, 0.4)
    assert kin.photometric.multiply == (0.8, 1.2) and kin.photometric.gamma == (0.85, 1.15)
    assert train_preset("HACS") == kin == train_preset("moments_in_time")
    p = PhotometricConfig()
    assert (p.blur_sigma, p.channel_add, p.colour, p.motion_blur) == ((0.1, 0.3), (-5, 15), (1.2, 1.6), (3, 7))
    assert (p.hue_saturation, p.contrast, p.perspective, p.rotate) == (16, (0.85, 1.115), (0.02, 0.05), 10)
    hsv = next(t for t in p.build().transforms if isinstance(t, A.HueSaturationValue))
    assert hsv.hue_shift_limit == (-11, 11) and hsv.sat_shift_limit == (-16, 16)  # imgaug 16/255 of 180
    assert (eval_preset("ucf101").resize_short, eval_preset("ucf101").crop_size) == (294, 224)
    assert eval_preset("kinetics400").crop_size == 256 and eval_preset("mit").crop_size == 294
    mict = train_preset("mict")
    assert (mict.resize, mict.size, mict.brightness) == ((192, 256), (160, 160), 15)
    assert set(PRESET_FAMILIES) == {"ucf101", "hmdb51", "kinetics", "mit", "jester", "mict"}


def test_presets_are_overridable_and_validated():
    cfg = train_preset("ucf101", size=(112, 112), flip=False, photometric=replace(PhotometricConfig(), rotate=None))
    assert cfg.size == (112, 112) and not cfg.flip and cfg.photometric.rotate is None
    with pytest.raises(UsageError, match="unknown augmentation option"):
        train_preset("ucf101", flips=False)
    with pytest.raises(UsageError, match="no augmentation preset"):
        train_preset("imagenet")
    with pytest.raises(UsageError, match="p_each"):
        PhotometricConfig(p_each=1.5)
    with pytest.raises(UsageError, match="contrast"):
        PhotometricConfig(contrast=(1.2, 0.8))
    with pytest.raises(UsageError, match="crop="):
        TrainAugmentConfig(crop="corner")
    with pytest.raises(UsageError, match="resize_short or resize"):
        EvalConfig(resize_short=256, resize=(192, 256))


@pytest.mark.parametrize(
    ("h", "w", "c", "expected"),
    [
        (6, 10, 4, [(1, 0), (1, 3), (1, 6)]),  # landscape: left, centre, right; centred vertically
        (10, 6, 4, [(0, 1), (3, 1), (6, 1)]),  # portrait: top, centre, bottom
        (5, 5, 5, [(0, 0), (0, 0), (0, 0)]),
    ],
)
def test_three_crop_positions(h, w, c, expected):
    ev = ClipEval(EvalConfig(crop_size=c, resize_short=None, crop="three"))
    clip = np.repeat(coord_frame(h, w)[None], 3, axis=0)
    out = ev(clip)
    assert out.shape == (3, 3, c, c, 3)
    for view, (y, x) in zip(out, expected, strict=True):
        assert view[0, 0, 0, 0] == x and view[0, 0, 0, 1] == y  # top-left pixel carries its coordinates
        assert np.array_equal(view, clip[:, y : y + c, x : x + c])


def test_eval_resizes_short_side_then_centre_crops():
    ev = ClipEval(EvalConfig(crop_size=8, resize_short=12, crop="centre"))
    out = ev(still_clip(t=3, h=20, w=30))
    assert out.shape == (3, 8, 8, 3)
    assert ClipEval(EvalConfig(crop_size=8, resize_short=12)).boxes(12, 18) == [(2, 5, 8, 8)]
    assert ev(still_clip(t=3, h=20, w=30), size=4).shape == (3, 4, 4, 3)
    assert ClipEval(EvalConfig(crop_size=8, resize_short=12, crop="none"))(still_clip(t=2, h=20, w=30)).shape == (
        2,
        12,
        18,
        3,
    )
    again = ClipEval(EvalConfig(crop_size=8, resize_short=12, crop="centre"))
    assert np.array_equal(again(still_clip(t=3, h=20, w=30), np.random.default_rng(5)), out)  # rng ignored


def test_multiscale_corner_crop_sizes_and_positions():
    crop = MultiScaleCornerCrop(scales=(128, 144, 160, 176, 192))
    pairs = crop.pairs(192, 256)
    assert len(pairs) == 25 and all(2 / 3 <= w / h <= 3 / 2 for h, w in pairs)
    assert MultiScaleCornerCrop(scales=(1.0, 0.5), aspect=(1, 1)).pairs(100, 150) == [(50, 50), (100, 100)]
    aug = ClipAugment(
        TrainAugmentConfig(
            size=8, resize_short=None, crop="multiscale", scales=(6,), aspect=(1, 1), flip=False, photometric=None
        )
    )
    seen = set()
    clip = np.repeat(coord_frame(10, 16)[None], 2, axis=0)
    step = aug.pipeline((8, 8)).transforms[0]
    for seed in range(60):
        aug(clip, seed)
        seen.add(step.params["box"])
    assert seen == {(0, 0, 6, 6), (0, 10, 6, 6), (4, 0, 6, 6), (4, 10, 6, 6), (2, 5, 6, 6)}


def test_output_size_per_call_and_pipeline_cache():
    aug = ClipAugment(train_preset("ucf101", resize_short=48, crop_size=32))
    clip = still_clip()
    assert aug(clip, 0, size=16).shape == (6, 16, 16, 3)
    assert aug(clip, 0, size=(24, 20)).shape == (6, 24, 20, 3)
    assert aug(clip, 0).shape == (6, 224, 224, 3)
    assert set(aug._pipelines) == {(16, 16), (24, 20), (224, 224)}


@pytest.mark.parametrize(
    "clip",
    [
        np.zeros((4, 8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((4, 8, 8, 4), np.uint8),
        [np.zeros((8, 8, 3), np.uint8)],
    ],
)
def test_bad_clips_raise(clip):
    with pytest.raises(VidnetError, match=r"uint8 RGB array \[T, H, W, 3\]"):
        ClipAugment()(clip, 0)
    with pytest.raises(VidnetError):
        ClipEval()(clip)


def test_crop_larger_than_frame_raises_clearly():
    with pytest.raises(VidnetError, match="does not fit"):
        ClipAugment(TrainAugmentConfig(resize_short=None, crop_size=64))(still_clip(), 0)
    with pytest.raises(VidnetError, match="does not fit"):
        ClipEval(EvalConfig(crop_size=64, resize_short=None))(still_clip())
    with pytest.raises(UsageError, match="Generator or a non-negative int"):
        ClipAugment(TrainAugmentConfig(size=16, resize_short=None, crop_size=16))(still_clip(), "seed")


def test_transforms_survive_pickling_for_workers():
    aug = ClipAugment(train_preset("hmdb51", size=24, resize_short=48, crop_size=32))
    clip = still_clip()
    expected = aug(clip, 4)
    clone = pickle.loads(pickle.dumps(aug))
    assert np.array_equal(clone(clip, 4), expected)
    assert pickle.loads(pickle.dumps(ClipEval(eval_preset("jester")))).config == eval_preset("jester")


@pytest.mark.parametrize(
    ("fast", "stock", "kwargs"),
    [
        ("_SmallestMaxSize", A.SmallestMaxSize, dict(max_size=24)),
        ("_Perspective", A.Perspective, dict(scale=(0.02, 0.05), keep_size=True, p=1.0)),
        ("_HorizontalFlip", A.HorizontalFlip, dict(p=1.0)),
    ],
)
def test_frame_by_frame_variants_match_the_library(fast, stock, kwargs):
    import random

    from vidnet.data import transforms

    clip = np.stack([textured_frame(h=30, w=44, seed=s) for s in range(4)])
    outs = []
    for cls in (getattr(transforms, fast), stock):
        pipe = A.Compose([cls(**kwargs)])
        pipe.set_random_state(np.random.default_rng(3), random.Random(3))
        outs.append(pipe(images=clip)["images"])
    assert outs[0].shape == outs[1].shape and np.array_equal(outs[0], outs[1])
