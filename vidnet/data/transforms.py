"""Clip-consistent spatial augmentation: every frame of a clip gets the same random parameters.

Clips are numpy arrays ``[T, H, W, 3]``, uint8, **RGB** channel order, in and out (the dataset turns the
result into a ``[C, T, H, W]`` tensor). The transforms are albumentations 2.x pipelines called once per
clip with ``images=clip``: albumentations draws one set of parameters per call and applies it to every
image of the list, which is exactly clip consistency (the test suite checks that a clip of identical
frames stays identical under every random transform).

Seeding. Each call takes a ``np.random.Generator`` (or an int seed); one 63-bit seed is drawn from it and
the whole pipeline is pointed at one fresh generator pair made from that seed (``set_random_state``), so
the same seed reproduces the same parameters. Albumentations' own ``Compose(seed=...)`` /
``set_random_seed`` are deliberately not used: they give every child transform its *own* generator
seeded with the *same* value, so the first draws of all children are equal and their ``p`` decisions fire
together (all or none, measured with three p=0.5 flips). A shared generator keeps them independent.

The parameters follow the original SRTG code (alexandrosstergiou/Squeeze-and-Recursion-Temporal-Gates,
``data/video_transforms.py`` and its README's augmentation list); imgaug,
which the original used, does not import with NumPy 2. Mapping from imgaug to albumentations:

==========================================  ==================================================================
original (imgaug)                           here (albumentations 2.x)
==========================================  ==================================================================
GaussianBlur sigma 0.1-0.3                  GaussianBlur(sigma_limit, 3x3 kernel)
Add(-5..15, per_channel)                    RGBShift: one offset per channel from the same range
AdditiveGaussianNoise scale 0.3*255         GaussNoise(std_range=(0, 0.3)) (std as a fraction of 255)
pillike.EnhanceColor 1.2-1.6                ColorJitter(saturation=(1.2, 1.6)): the same blend with grey
MotionBlur k 3/5/7                          MotionBlur(blur_limit=(3, 7)) (odd sizes)
AddToHueAndSaturation(-16..16)              HueSaturationValue: hue +-11 (imgaug's 16/255 of a half-turn in
                                            OpenCV's 0-180 hue units), saturation +-16
LinearContrast 0.85-1.115                   ColorJitter(contrast=(0.85, 1.115)): scales around the image mean
OneOf(PerspectiveTransform 0.02-0.05,       OneOf(Perspective(scale, keep_size), Rotate(limit=10))
      Rotate +-10)
Multiply 0.8-1.2 (Kinetics)                 MultiplicativeNoise(multiplier, per image, not per pixel)
GammaContrast 0.85-1.15 (Kinetics)          RandomGamma(85..115): one gamma for all channels (imgaug drew
                                            one per channel)
AverageBlur k 1..2 (Kinetics)               not reproduced: k=1 is the identity and albumentations has no 2x2
                                            box blur; the Gaussian and motion blurs cover blurring
==========================================  ==================================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np

from vidnet.errors import UsageError, VidnetError

__all__ = [
    "PhotometricConfig",
    "TrainAugmentConfig",
    "EvalConfig",
    "ClipAugment",
    "ClipEval",
    "MultiScaleCornerCrop",
    "train_preset",
    "eval_preset",
    "PRESET_FAMILIES",
]

Size = tuple[int, int]
CropMode = Literal["random", "random_resized", "multiscale", "centre", "none"]
CORNER_POSITIONS = ("c", "tl", "tr", "bl", "br")


def _range(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> tuple[float, float] | None:
    """Validate an optional (low, high) field, naming it in the error."""
    if value is None:
        return None
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a (low, high) pair or None, got {value!r}") from None
    if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
        bounds = f" within [{lo}, {hi}]" if lo is not None or hi is not None else ""
        raise UsageError(f"{name}={value!r}: need low <= high{bounds}")
    return a, b


def _size(name: str, value: Any) -> Size:
    """An output size given as an int (square) or (height, width)."""
    h, w = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise UsageError(f"{name} must be a positive int or (height, width), got {value!r}")
    return int(h), int(w)


@dataclass(frozen=True)
class PhotometricConfig:
    """The original's photometric/geometric list: applied with ``p_any``, then each item with ``p_each``.

    Set an item to None to leave it out. Ranges are in the original's units (see the module table).
    """

    p_any: float = 0.8
    """Probability that the list is considered at all for a clip."""
    p_each: float = 0.4
    """Probability of each item once the list is considered (perspective/rotation count as one item)."""
    blur_sigma: tuple[float, float] | None = (0.1, 0.3)
    """Gaussian blur sigma range, pixels."""
    channel_add: tuple[float, float] | None = (-5, 15)
    """Per-channel additive offset range, 0-255 units."""
    noise_std: tuple[float, float] | None = (0.0, 0.3)
    """Gaussian noise standard deviation range as a fraction of 255 (the original README's 0.3*255)."""
    colour: tuple[float, float] | None = (1.2, 1.6)
    """Colour (saturation) enhancement factor range; 1 is unchanged."""
    motion_blur: tuple[int, int] | None = (3, 7)
    """Motion blur kernel size range; odd sizes in it are drawn (3, 5, 7)."""
    hue_saturation: float | None = 16
    """imgaug AddToHueAndSaturation amplitude: hue and saturation shifts within +-this (imgaug units)."""
    contrast: tuple[float, float] | None = (0.85, 1.115)
    """Linear contrast factor range around the image mean."""
    perspective: tuple[float, float] | None = (0.02, 0.05)
    """Perspective distortion scale range (one of perspective/rotation is applied)."""
    rotate: float | None = 10
    """Rotation limit in degrees (+-)."""
    multiply: tuple[float, float] | None = None
    """Multiplicative brightness range (Kinetics family only)."""
    gamma: tuple[float, float] | None = None
    """Gamma range (Kinetics family only)."""

    def __post_init__(self) -> None:
        for name in ("p_any", "p_each"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"photometric {name} must be a probability in [0, 1], got {getattr(self, name)}")
        checks = {
            "blur_sigma": (0, None),
            "channel_add": (-255, 255),
            "noise_std": (0, 1),
            "colour": (0, None),
            "motion_blur": (3, None),
            "contrast": (0, None),
            "perspective": (0, 1),
            "multiply": (0, None),
            "gamma": (0, None),
        }
        for name, (lo, hi) in checks.items():
            object.__setattr__(self, name, _range(f"photometric {name}", getattr(self, name), lo, hi))
        for name in ("hue_saturation", "rotate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 180:
                raise UsageError(f"photometric {name} must be in [0, 180] or None, got {value!r}")

    def build(self) -> A.BaseCompose | None:
        """The albumentations block, or None when nothing is enabled."""
        p = self.p_each
        items: list[A.BasicTransform | A.BaseCompose] = []
        if self.blur_sigma:
            items.append(A.GaussianBlur(blur_limit=(3, 3), sigma_limit=self.blur_sigma, p=p))
        if self.channel_add:
            add = tuple(int(round(v)) for v in self.channel_add)
            items.append(A.RGBShift(r_shift_limit=add, g_shift_limit=add, b_shift_limit=add, p=p))
        if self.noise_std:
            items.append(A.GaussNoise(std_range=self.noise_std, p=p))
        if self.colour:
            items.append(A.ColorJitter(brightness=0, contrast=0, saturation=self.colour, hue=0, p=p))
        if self.motion_blur:
            lo, hi = (int(v) for v in self.motion_blur)
            items.append(A.MotionBlur(blur_limit=(lo | 1, hi if hi % 2 else hi - 1), p=p))
        if self.hue_saturation:
            # imgaug maps hue in [-255, 255] onto a full turn; OpenCV's uint8 hue runs 0-180 per turn.
            hue = int(round(self.hue_saturation * 180 / 255))
            items.append(
                A.HueSaturationValue(
                    hue_shift_limit=hue, sat_shift_limit=int(round(self.hue_saturation)), val_shift_limit=0, p=p
                )
            )
        if self.contrast:
            items.append(A.ColorJitter(brightness=0, contrast=self.contrast, saturation=0, hue=0, p=p))
        geometric = []
        if self.perspective:
            geometric.append(_Perspective(scale=self.perspective, keep_size=True, p=1.0))
        if self.rotate:
            geometric.append(A.Rotate(limit=self.rotate, p=1.0))
        if geometric:
            items.append(A.OneOf(geometric, p=p))
        if self.multiply:
            items.append(A.MultiplicativeNoise(multiplier=self.multiply, per_channel=False, elementwise=False, p=p))
        if self.gamma:
            lo, hi = self.gamma
            items.append(A.RandomGamma(gamma_limit=(lo * 100, hi * 100), p=p))
        if not items or self.p_any == 0:
            return None
        return A.Sequential(items, p=self.p_any)


@dataclass(frozen=True)
class TrainAugmentConfig:
    """Training augmentation of a clip: resize, crop, resize to the output size, flip, photometric."""

    size: Size | int = (224, 224)
    """Default output size (height, width); a call may ask for another (multigrid)."""
    resize_short: int | None = 294
    """Resize so the shorter side has this length, keeping the aspect ratio, before cropping; None skips."""
    resize: Size | None = None
    """Resize to exactly (height, width) before cropping, ignoring the aspect ratio (MiCT: 192x256)."""
    centre_crop: int | None = None
    """Square centre crop before the random crop (Kinetics family: 384); None skips."""
    crop: CropMode = "random"
    """``random``: a crop_size square at a uniform position; ``random_resized``: area ``scale`` and aspect
    ``ratio`` (Inception style); ``multiscale``: corner or centre crop with sides from ``scales`` (MiCT,
    Efficient-3DCNNs); ``centre``; ``none``."""
    crop_size: int | None = 224
    """Side of the ``random``/``centre`` crop; None crops at the output size (no resize afterwards)."""
    scale: tuple[float, float] = (0.08, 1.0)
    """``random_resized``: range of the crop's area as a fraction of the frame."""
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """``random_resized``: range of the crop's aspect ratio (width / height)."""
    scales: tuple[float, ...] = (128, 144, 160, 176, 192)
    """``multiscale``: crop side lengths, drawn independently for height and width; values above 1 are
    pixels, values up to 1 are fractions of the frame's shorter side."""
    aspect: tuple[float, float] = (2 / 3, 3 / 2)
    """``multiscale``: allowed width / height of the crop; (1, 1) gives square crops."""
    flip: bool = True
    """Horizontal flip with p=0.5. Off for datasets whose labels have a direction (Jester swipes)."""
    brightness: float = 0
    """Uniform additive brightness within +-this (0-255 units), applied to every clip; 0 disables."""
    photometric: PhotometricConfig | None = field(default_factory=PhotometricConfig)
    """The original's photometric list, or None."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _size("size", self.size))
        if self.resize is not None:
            object.__setattr__(self, "resize", _size("resize", self.resize))
            if self.resize_short is not None:
                raise UsageError("give resize_short or resize, not both")
        for name in ("resize_short", "centre_crop", "crop_size"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise UsageError(f"{name} must be a positive int or None, got {value!r}")
        if self.crop not in ("random", "random_resized", "multiscale", "centre", "none"):
            raise UsageError(f"crop={self.crop!r}: use random, random_resized, multiscale, centre or none")
        object.__setattr__(self, "scale", _range("scale", self.scale, 0, 1))
        object.__setattr__(self, "ratio", _range("ratio", self.ratio, 0))
        object.__setattr__(self, "aspect", _range("aspect", self.aspect, 0))
        if not self.scales or any(s <= 0 for s in self.scales):
            raise UsageError(f"scales must be positive crop sides, got {self.scales!r}")
        object.__setattr__(self, "scales", tuple(self.scales))
        if not 0 <= self.brightness <= 255:
            raise UsageError(f"brightness must be in [0, 255], got {self.brightness!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation transform: resize, then a centre crop or three crops along the longer side."""

    crop_size: int = 224
    """Side of the square crop(s); also the output size unless a call asks for another."""
    resize_short: int | None = 256
    """Shorter side after resizing (aspect kept); None keeps the stored size."""
    resize: Size | None = None
    """Resize to exactly (height, width) instead, ignoring the aspect ratio (MiCT)."""
    crop: Literal["centre", "three", "none"] = "centre"
    """``centre``; ``three``: start, centre and end of the longer side (left/centre/right for landscape
    frames, top/centre/bottom for portrait), centred on the shorter side, as PySlowFast's 3-crop testing;
    ``none``: no crop (the output is the resized frame)."""

    def __post_init__(self) -> None:
        if int(self.crop_size) != self.crop_size or self.crop_size < 1:
            raise UsageError(f"crop_size must be a positive int, got {self.crop_size!r}")
        if self.resize is not None:
            object.__setattr__(self, "resize", _size("resize", self.resize))
            if self.resize_short is not None:
                raise UsageError("give resize_short or resize, not both")
        if self.resize_short is not None and (int(self.resize_short) != self.resize_short or self.resize_short < 1):
            raise UsageError(f"resize_short must be a positive int or None, got {self.resize_short!r}")
        if self.crop not in ("centre", "three", "none"):
            raise UsageError(f"crop={self.crop!r}: use centre, three or none")


class MultiScaleCornerCrop(A.ImageOnlyTransform):
    """Crop a (height, width) drawn from ``scales`` at one of the four corners or the centre.

    Heights and widths are drawn independently among the pairs whose width / height lies in ``aspect``
    (MiCT-Net: sides 128..192 give aspects 2/3..3/2; Efficient-3DCNNs: square crops of 1..0.5 of the
    shorter side). Sides above 1 are pixels, up to 1 fractions of the shorter side; a side larger than the
    frame is cut to the frame. Albumentations has corner-less crops only, so this one is added here; its
    randomness comes from the pipeline's generator like any other transform.
    """

    def __init__(
        self,
        scales: tuple[float, ...],
        aspect: tuple[float, float] = (2 / 3, 3 / 2),
        positions: tuple[str, ...] = CORNER_POSITIONS,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scales = tuple(float(s) for s in scales)
        self.aspect = (float(aspect[0]), float(aspect[1]))
        unknown = set(positions) - set(CORNER_POSITIONS)
        if unknown or not positions:
            raise UsageError(f"crop positions must be among {CORNER_POSITIONS}, got {positions!r}")
        self.positions = tuple(positions)

    def pairs(self, height: int, width: int) -> list[Size]:
        """Every allowed (crop height, crop width) for a frame of this size."""
        short = min(height, width)
        sides = sorted({max(1, int(round(s * short)) if s <= 1 else int(s)) for s in self.scales})
        lo, hi = self.aspect
        eps = 1e-9  # 192/128 must count as exactly 3/2
        pairs = [(h, w) for h in sides for w in sides if lo - eps <= w / h <= hi + eps]
        if not pairs:
            raise UsageError(f"no crop side pair from scales {self.scales} has an aspect within {self.aspect}")
        return pairs

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        pairs = self.pairs(height, width)
        h, w = pairs[self.py_random.randrange(len(pairs))]
        h, w = min(h, height), min(w, width)
        position = self.positions[self.py_random.randrange(len(self.positions))]
        y = {"t": 0, "b": height - h}.get(position[0], (height - h) // 2)
        x = {"l": 0, "r": width - w}.get(position[-1], (width - w) // 2)
        return {"box": (y, x, h, w)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        y, x, h, w = box
        return img[y : y + h, x : x + w]

    def apply_to_images(self, images: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        y, x, h, w = box
        return np.ascontiguousarray(images[:, y : y + h, x : x + w])  # one slice of the stack, no per-frame loop

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scales", "aspect", "positions")


class _FrameByFrame:
    """Run a transform's per-image ``apply`` on each frame instead of albumentations' batched path.

    For ``images=`` albumentations 2.0.8 folds the frames into one image with T*3 channels and calls OpenCV
    once; for these transforms that is slower than a loop over the frames (16x128x171 clip, median of 80:
    SmallestMaxSize 4.4 -> 1.0 ms, Perspective 6.3 -> 2.3 ms, HorizontalFlip 1.4 -> 0.5 ms) and gives the
    same pixels (tests/data/test_transforms.py checks equality with the stock classes). The parameters are
    still drawn once per clip by the library.
    """

    def apply_to_images(self, images: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        return np.stack([self.apply(image, *args, **params) for image in images])  # type: ignore[attr-defined]


class _SmallestMaxSize(_FrameByFrame, A.SmallestMaxSize):
    pass


class _Perspective(_FrameByFrame, A.Perspective):
    pass


class _HorizontalFlip(_FrameByFrame, A.HorizontalFlip):
    pass


def _check_clip(clip: Any) -> np.ndarray:
    if not isinstance(clip, np.ndarray) or clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        desc = f"{type(clip).__name__} {getattr(clip, 'dtype', '')} {getattr(clip, 'shape', '')}".strip()
        raise VidnetError(f"a clip must be a uint8 RGB array [T, H, W, 3], got {desc}")
    if clip.shape[0] < 1 or clip.shape[1] < 1 or clip.shape[2] < 1:
        raise VidnetError(f"a clip must have at least one frame of at least 1x1 pixels, got shape {clip.shape}")
    return clip


def _seed_from(rng: np.random.Generator | int) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(1 << 63))
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng >= 0:
        return int(rng)
    raise UsageError(f"augmentation needs a np.random.Generator or a non-negative int seed, got {rng!r}")


def _resize_steps(resize_short: int | None, resize: Size | None) -> list[A.BasicTransform]:
    if resize is not None:
        return [A.Resize(height=resize[0], width=resize[1], interpolation=cv2.INTER_LINEAR)]
    if resize_short is not None:
        return [_SmallestMaxSize(max_size=resize_short, interpolation=cv2.INTER_LINEAR)]
    return []


class ClipAugment:
    """Random training augmentation of one clip, identical on all of its frames.

    Args:
        config: What to apply; see `TrainAugmentConfig` and `train_preset`.

    Call it as ``augment(clip, rng, size=None)`` with a uint8 RGB clip ``[T, H, W, 3]``; it returns a new
    uint8 array ``[T, h, w, 3]`` with (h, w) = ``size`` or the config's size. The pipelines are built once
    per output size and cached, so multigrid's changing sizes cost one build each.

    Order: resize (short side or fixed), centre crop, crop, resize to the output size, flip, brightness,
    photometric list. The photometric list runs at the output size, where it is cheapest; the original ran
    it on the 224 crop before its final resize.
    """

    def __init__(self, config: TrainAugmentConfig | None = None) -> None:
        self.config = config or TrainAugmentConfig()
        self._pipelines: dict[Size, A.Compose] = {}

    def __repr__(self) -> str:
        return f"ClipAugment({self.config!r})"

    def pipeline(self, size: Size) -> A.Compose:
        """The albumentations pipeline producing clips of ``size`` (built on first use)."""
        if size not in self._pipelines:
            self._pipelines[size] = A.Compose(self._steps(size))
        return self._pipelines[size]

    def _steps(self, size: Size) -> list[Any]:
        cfg = self.config
        h, w = size
        steps: list[Any] = _resize_steps(cfg.resize_short, cfg.resize)
        if cfg.centre_crop is not None:
            steps.append(A.CenterCrop(height=cfg.centre_crop, width=cfg.centre_crop))
        side = cfg.crop_size if cfg.crop_size is not None else None
        if cfg.crop == "random_resized":
            steps.append(A.RandomResizedCrop(size=(h, w), scale=cfg.scale, ratio=cfg.ratio))
        else:
            if cfg.crop == "random":
                steps.append(A.RandomCrop(height=side or h, width=side or w))
            elif cfg.crop == "centre":
                steps.append(A.CenterCrop(height=side or h, width=side or w))
            elif cfg.crop == "multiscale":
                steps.append(MultiScaleCornerCrop(cfg.scales, cfg.aspect))
            # The crop is resized to the output size unless it already is that size.
            if cfg.crop in ("multiscale", "none") or (side is not None and (side, side) != (h, w)):
                steps.append(A.Resize(height=h, width=w, interpolation=cv2.INTER_LINEAR))
        if cfg.flip:
            steps.append(_HorizontalFlip(p=0.5))
        if cfg.brightness:
            limit = cfg.brightness / 255.0
            # brightness_by_max=True adds beta * 255 (checked: +15/255 turns 100 into 115).
            steps.append(A.RandomBrightnessContrast(brightness_limit=limit, contrast_limit=0, p=1.0))
        if cfg.photometric is not None:
            block = cfg.photometric.build()
            if block is not None:
                steps.append(block)
        return steps

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator | int, *, size: Size | int | None = None
    ) -> np.ndarray:
        """Augment one clip.

        Args:
            clip: uint8 RGB frames ``[T, H, W, 3]``.
            rng: The sample's generator (see `vidnet.data.sampling.worker_rng`; one value is drawn from it)
                or an int seed. The same seed gives the same parameters.
            size: Output (height, width) or side; defaults to the config's size.

        Returns:
            The augmented clip, uint8 ``[T, h, w, 3]``, a new C-contiguous array.
        """
        clip = _check_clip(clip)
        out_size = self.config.size if size is None else _size("size", size)
        self._check_fits(clip.shape[1:3], out_size)
        seed = _seed_from(rng)
        pipeline = self.pipeline(out_size)  # type: ignore[arg-type]
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return np.ascontiguousarray(pipeline(images=clip)["images"])

    def _check_fits(self, hw: tuple[int, int], out_size: Size) -> None:
        cfg = self.config
        if cfg.resize is not None:
            h, w = cfg.resize
        elif cfg.resize_short is not None:
            short = min(hw)
            h, w = (round(hw[0] * cfg.resize_short / short), round(hw[1] * cfg.resize_short / short))
        else:
            h, w = hw
        if cfg.centre_crop is not None:
            if cfg.centre_crop > min(h, w):
                raise VidnetError(f"centre_crop {cfg.centre_crop} is larger than the resized frame {h}x{w}")
            h = w = cfg.centre_crop
        need = None
        if cfg.crop in ("random", "centre"):
            need = (cfg.crop_size, cfg.crop_size) if cfg.crop_size is not None else out_size
        if need is not None and (need[0] > h or need[1] > w):
            raise VidnetError(
                f"crop {need[0]}x{need[1]} does not fit in the {h}x{w} frame (stored {hw[0]}x{hw[1]}); "
                "lower crop_size or raise resize_short"
            )


class ClipEval:
    """Deterministic evaluation transform: resize, then a centre crop or three crops.

    Call it as ``evaluate(clip, size=None)``: a uint8 RGB clip ``[T, H, W, 3]`` gives ``[T, s, s, 3]`` with
    ``s = crop_size`` (or ``size`` when given: the crop is then resized to it), and ``crop="three"`` gives
    ``[3, T, s, s, 3]``. An ``rng`` argument is accepted and ignored, so training and evaluation transforms
    are called the same way.
    """

    def __init__(self, config: EvalConfig | None = None) -> None:
        self.config = config or EvalConfig()
        steps = _resize_steps(self.config.resize_short, self.config.resize)
        self._resize = A.Compose(steps) if steps else None

    def __repr__(self) -> str:
        return f"ClipEval({self.config!r})"

    def boxes(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """Crop boxes ``(y, x, h, w)`` on a frame of this size (after resizing)."""
        c = self.config.crop_size
        if self.config.crop == "none":
            return [(0, 0, height, width)]
        if c > height or c > width:
            raise VidnetError(f"eval crop {c}x{c} does not fit in the {height}x{width} resized frame")
        y, x = (height - c) // 2, (width - c) // 2
        if self.config.crop == "centre":
            return [(y, x, c, c)]
        if width >= height:
            return [(y, 0, c, c), (y, x, c, c), (y, width - c, c, c)]
        return [(0, x, c, c), (y, x, c, c), (height - c, x, c, c)]

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator | int | None = None, *, size: Size | int | None = None
    ) -> np.ndarray:
        """Resize and crop one clip; see the class docstring for shapes."""
        clip = _check_clip(clip)
        frames = self._resize(images=clip)["images"] if self._resize is not None else clip
        out = None if size is None else _size("size", size)
        crops = []
        for y, x, h, w in self.boxes(frames.shape[1], frames.shape[2]):
            crop = frames[:, y : y + h, x : x + w]
            if out is not None and (h, w) != out:
                crop = np.stack([cv2.resize(f, (out[1], out[0]), interpolation=cv2.INTER_LINEAR) for f in crop])
            crops.append(np.ascontiguousarray(crop))
        return np.stack(crops) if self.config.crop == "three" else crops[0]


# Dataset families and their settings, from the original SRTG code's data/video_transforms.py unless noted.
_KINETICS_PHOTOMETRIC = PhotometricConfig(p_any=0.9, p_each=0.4, multiply=(0.8, 1.2), gamma=(0.85, 1.15))
_TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "ucf101": {"resize_short": 294, "crop": "random", "crop_size": 224, "photometric": PhotometricConfig(0.65, 0.3)},
    "hmdb51": {"resize_short": 294, "crop": "random", "crop_size": 224, "photometric": PhotometricConfig(0.8, 0.4)},
    "kinetics": {
        "resize_short": 384,
        "centre_crop": 384,
        "crop": "random",
        "crop_size": None,
        "photometric": _KINETICS_PHOTOMETRIC,
    },
    # Efficient-3DCNNs Jester: square corner/centre crops of 1..0.5 of the shorter side (scale step 2^-1/4),
    # 112 pixels out, and never a flip (it turns "swipe left" into "swipe right"). Photometric: the
    # original's list at the HMDB-51 probabilities.
    "jester": {
        "size": (112, 112),
        "resize_short": None,
        "crop": "multiscale",
        "scales": (1.0, 0.8409, 0.7071, 0.5946, 0.5),
        "aspect": (1.0, 1.0),
        "flip": False,
        "photometric": PhotometricConfig(0.8, 0.4),
    },
    # MiCT-Net (UCF-101): 256x192 frames, crop sides from 128..192 at a corner or the centre, 160 out, and
    # brightness +-15 (the ResNet-LSTM seed's only photometric change); none of the original's list.
    "mict": {
        "size": (160, 160),
        "resize_short": None,
        "resize": (192, 256),
        "crop": "multiscale",
        "scales": (128, 144, 160, 176, 192),
        "aspect": (2 / 3, 3 / 2),
        "brightness": 15,
        "photometric": None,
    },
}
_EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "ucf101": {"resize_short": 294, "crop_size": 224},
    "hmdb51": {"resize_short": 294, "crop_size": 224},
    "kinetics": {"resize_short": 294, "crop_size": 256},  # centre 294 then centre 256 = centre 256
    "mit": {"resize_short": 294, "crop_size": 294},  # MiT has no 256 crop
    "jester": {"resize_short": 112, "crop_size": 112},
    "mict": {"resize_short": None, "resize": (192, 256), "crop_size": 160},
}
_ALIASES = {
    "ucf101": "ucf101",
    "hmdb51": "hmdb51",
    "hmdb": "hmdb51",
    "diving48": "hmdb51",  # HMDB-51 and Diving48 share the 0.8/0.4 pipeline
    "kinetics": "kinetics",
    "k400": "kinetics",
    "k600": "kinetics",
    "k700": "kinetics",
    "hacs": "kinetics",
    "mit": "mit",
    "moments": "mit",
    "momentsintime": "mit",
    "jester": "jester",
    "20bnjester": "jester",
    "mict": "mict",
}
PRESET_FAMILIES = tuple(sorted(set(_ALIASES.values())))


def _family(dataset: str) -> str:
    key = "".join(ch for ch in dataset.lower() if ch.isalnum())
    if key.startswith("kinetics"):
        key = "kinetics"
    if key not in _ALIASES:
        raise UsageError(f"no augmentation preset for dataset {dataset!r}; known: {', '.join(sorted(_ALIASES))}")
    return _ALIASES[key]


def train_preset(dataset: str, **overrides: Any) -> TrainAugmentConfig:
    """The training augmentation of a dataset family, with any field overridden.

    Args:
        dataset: A dataset name: UCF-101, HMDB-51, Diving48, Kinetics(-400/600/700), HACS, MiT / Moments,
            Jester, or ``mict`` (MiCT-Net's UCF-101 recipe). Case, dashes and underscores are ignored.
        **overrides: `TrainAugmentConfig` fields, e.g. ``size=(112, 112)`` or ``flip=False``.
    """
    family = _family(dataset)
    base = _TRAIN_PRESETS["kinetics" if family == "mit" else family]
    unknown = set(overrides) - set(TrainAugmentConfig.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
    return replace(TrainAugmentConfig(**base), **overrides)


def eval_preset(dataset: str, **overrides: Any) -> EvalConfig:
    """The evaluation transform of a dataset family (see `train_preset`), with any field overridden."""
    base = _EVAL_PRESETS[_family(dataset)]
    unknown = set(overrides) - set(EvalConfig.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown evaluation transform option(s): {', '.join(sorted(unknown))}")
    return replace(EvalConfig(**base), **overrides)
