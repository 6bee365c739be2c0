"""Time the clip transforms on one random uint8 clip (default 16x128x171, as the issue asks).

Usage: python tools/bench_transforms.py [--frames 16 --height 128 --width 171 --size 112 --repeats 300]
Prints median / mean / p90 wall time and the median CPU time of this process per clip (the CPU figure is
the one to compare on a shared machine). OpenCV runs single-threaded, as inside a DataLoader worker.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from vidnet.data.transforms import (
    ClipAugment,
    ClipEval,
    EvalConfig,
    PhotometricConfig,
    TrainAugmentConfig,
    train_preset,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    clip = np.random.default_rng(0).integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    s = args.size
    crop = dict(size=s, resize_short=None, crop="random", crop_size=s)
    cases = {
        f"random crop {s} + flip": ClipAugment(TrainAugmentConfig(**crop, photometric=None)),
        f"random resized crop {s} + flip": ClipAugment(
            TrainAugmentConfig(size=s, resize_short=None, crop="random_resized", photometric=None)
        ),
        "ucf101 preset (p 0.65 / 0.3)": ClipAugment(train_preset("ucf101", **crop)),
        "hmdb51 preset (p 0.8 / 0.4)": ClipAugment(train_preset("hmdb51", **crop)),
        "kinetics preset (p 0.9 / 0.4, +2 items)": ClipAugment(
            train_preset("kinetics", size=s, resize_short=None, centre_crop=None)
        ),
        "jester preset (multiscale corner crop)": ClipAugment(train_preset("jester", size=s)),
        "every photometric item forced on": ClipAugment(
            TrainAugmentConfig(**crop, photometric=PhotometricConfig(p_any=1.0, p_each=1.0))
        ),
        f"eval: short side {s}, centre crop {s}": ClipEval(EvalConfig(crop_size=s, resize_short=s)),
        f"eval: short side {s}, three crops {s}": ClipEval(EvalConfig(crop_size=s, resize_short=s, crop="three")),
    }
    print(f"clip {args.frames}x{args.height}x{args.width}x3 uint8, {args.repeats} calls each")
    for name, transform in cases.items():
        for i in range(20):
            transform(clip, i)
        wall, cpu = [], []
        for i in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            transform(clip, i)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        w, c = np.array(wall) * 1e3, np.array(cpu) * 1e3
        print(
            f"{name:42s} wall median {np.median(w):6.2f} mean {w.mean():6.2f} p90 {np.percentile(w, 90):6.2f} ms"
            f" | cpu mean {c.mean():6.2f} ms"
        )


if __name__ == "__main__":
    main()
