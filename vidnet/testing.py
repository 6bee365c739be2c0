"""Deterministic fixtures shared by tests: parity weights and clips as ``tests/network/parity`` defines them.

The parity fixtures were produced by the reference implementations filled with these exact values, so a
vidnet model that loads the same values under the reference key names must produce the same logits. They all
live in one folder, ``tests/network/parity`` (its README says where each one comes from).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

__all__ = ["parity_value", "parity_state_dict", "parity_clip", "load_parity_fixture", "parity_dir"]


def parity_value(key: str, shape: list[int] | tuple[int, ...], dtype: str = "float32") -> torch.Tensor:
    """The deterministic value of one reference state-dict entry (see ``tests/network/parity/README.md``)."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    phase = (zlib.crc32(key.encode("utf-8")) % 10007) / 10007 * 2 * math.pi
    v = np.sin(0.61803 * np.arange(n, dtype=np.float64) + phase)
    if "bias_ih" in key or "bias_hh" in key:
        v = np.full(n, 1.5)
    elif key.endswith("running_var"):
        v = 1 + 0.25 * (v + 1)
    elif key.endswith("running_mean"):
        v = 0.05 * v
    elif len(shape) == 1 and key.endswith("weight"):
        v = 1 + 0.1 * v
    elif len(shape) <= 1:
        v = 0.05 * v
    else:
        fan_in = int(np.prod(shape[1:]))
        v = v * math.sqrt(6 / fan_in)
    out = torch.from_numpy(v.reshape(shape)).to(torch.float32)
    return out if dtype.startswith("float") else out.to(getattr(torch, dtype))


def parity_state_dict(fixture: dict) -> dict[str, torch.Tensor]:
    """The original-keyed state dict of a parity fixture, filled with :func:`parity_value`."""
    return {k: parity_value(k, shape, dtype) for k, shape, dtype in fixture["state_dict"]}


def parity_clip(shape: tuple[int, ...] = (2, 3, 16, 112, 112)) -> torch.Tensor:
    """The deterministic input clip of the parity fixtures: ``x[b].flat[i] = sin(0.017*(1+0.37*b)*i + b)``."""
    per = int(np.prod(shape[1:]))
    i = np.arange(per, dtype=np.float64)
    rows = [np.sin(0.017 * (1 + 0.37 * b) * i + b).reshape(shape[1:]) for b in range(shape[0])]
    return torch.from_numpy(np.stack(rows)).to(torch.float32)


def parity_dir() -> Path | None:
    """Where the parity fixtures live: ``$VIDNET_PARITY_DIR``, else ``tests/network/parity`` of the repository
    (they are vendored there, so a fresh clone runs the parity tests)."""
    env = os.environ.get("VIDNET_PARITY_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / "tests" / "network" / "parity")
    return next((c for c in candidates if c.is_dir()), None)


def load_parity_fixture(name: str) -> dict:
    """Load ``<parity_dir>/<name>.json``, or its gzipped form ``<name>.json.gz`` (e.g. ``x3d_m.pyslowfast``).

    Raises:
        FileNotFoundError: the fixture is missing (the repository ships them: a missing one is a broken checkout).
        ValueError: both forms exist (one fixture, one file).
    """
    base = (parity_dir() or Path("tests/network/parity")) / f"{name}.json"
    gz = base.with_name(base.name + ".gz")
    found = [p for p in (base, gz) if p.is_file()]
    if not found:
        raise FileNotFoundError(f"parity fixture {base} (or {gz.name}) is missing")
    if len(found) > 1:
        raise ValueError(f"parity fixture {name}: both {base.name} and {gz.name} exist; keep one")
    if found[0] is gz:
        with gzip.open(gz, "rt", encoding="utf-8") as f:
            return json.load(f)
    return json.loads(base.read_text())


def moving_frames(n: int = 12, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """RGB uint8 ``[n, H, W, 3]`` frames of a texture sliding right two pixels per frame.

    The texture has the statistics of natural footage: detailed luminance, smooth and moderate colour
    (chroma detail is what 4:2:0 video and JPEG both discard, so saturated colour noise would measure the
    codecs' chroma loss rather than the store).
    """
    import cv2

    rng = np.random.default_rng(seed)
    size = (width * 2, height)
    luma = cv2.resize(rng.uniform(0, 255, (height // 4, width // 2)).astype(np.float32), size,
                      interpolation=cv2.INTER_CUBIC)
    tint = cv2.resize(rng.uniform(0, 255, (3, 6, 3)).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    big = np.clip(0.7 * luma[..., None] + 0.3 * tint, 0, 255).astype(np.uint8)
    return np.stack([big[:, 2 * i % width : 2 * i % width + width] for i in range(n)])


def write_test_video(path: str | os.PathLike, n: int = 12, *, height: int = 48, width: int = 64, fps: int = 25,
                     codec: str = "libx264", faststart: bool = False, seed: int = 0) -> np.ndarray:
    """Write a tiny real video with PyAV; returns the frames it encoded."""
    from vidnet.data.sample import write_video

    frames = moving_frames(n, height, width, seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_video(Path(path), frames, fps, codec, faststart=faststart)
    return frames
