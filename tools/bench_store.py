"""Benchmark of `vidnet convert` (the YUV path against the RGB path) and of raw frame reads from frames.db stores.

Everything is measured side by side in one run on the same generated H.264 videos, in interleaved rounds (the
median is printed with the lowest and highest round), so the ratios are meaningful on a noisy machine where
absolute numbers are not:

* conversion paths, one process: frames/s of decode -> planes resized -> JPEG from the planes (the YUV path,
  `vidnet.data.ingest.encode_video_frame`) against decode -> RGB -> resize -> JPEG from RGB (the RGB path,
  kept for sources without 4:2:0 frames), and of decoding alone; then each part timed alone on frames held
  in memory;
* quality: bytes per frame and PSNR against the decoder's frames (RGB, resized to the same size) of both
  paths at JPEG quality 75, 85, 90 and 95;
* whole conversions (`convert_dataset`): 1 worker against the sum of its parts, 2 workers against 1, one
  video with 2 decoder threads (what the last video of a run gets) against 1, and a check that no temporary
  JPEG file was written;
* reads: frames fetched per second by random 16-frame index lists, from the store (one SQL query per clip)
  and from a folder of the same JPEG bytes (one file per frame), in this process with a warm cache and in a
  fresh process after asking the kernel to drop its page cache (when permitted: "cold-ish" otherwise).

Usage::

    python tools/bench_store.py [--videos 8] [--frames 150] [--size 640x480] [--short-side 240] [--rounds 5]
                                [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

QUALITIES = (75, 85, 90, 95)


def _make_videos(root: Path, n: int, frames: int, width: int, height: int) -> None:
    from vidnet.testing import write_test_video

    for i in range(n):
        write_test_video(root / f"class{i % 4}" / f"video{i:03d}.mp4", frames, height=height, width=width, seed=i)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "low": float(min(values)), "high": float(max(values))}


def _fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['low']:,.{digits}f}-{s['high']:,.{digits}f})"


def _rgb_path(frame, size: tuple[int, int], quality: int) -> bytes:
    from vidnet.data.ingest import resize_frame
    from vidnet.data.store import encode_jpeg
    from vidnet.data.video import frame_to_rgb

    return encode_jpeg(resize_frame(frame_to_rgb(frame), size), quality)


def _paths(videos: list[Path], short_side: int | None, quality: int, rounds: int) -> dict:
    """Frames/s of the YUV path, the RGB path and decoding alone (interleaved), and each part alone."""
    from vidnet.data.ingest import encode_video_frame, resize_frame, resize_yuv420, target_size
    from vidnet.data.store import encode_jpeg, encode_jpeg_planes
    from vidnet.data.video import frame_to_rgb, frame_to_yuv420, iter_decoded_frames

    def whole(path: Path, convert: Callable | None) -> tuple[int, float]:
        t = time.perf_counter()
        n = 0
        size = None
        for frame in iter_decoded_frames(path):
            size = size or target_size(frame.width, frame.height, short_side)
            if convert is not None:
                convert(frame, size, quality)
            n += 1
        return n, time.perf_counter() - t

    runs = {"yuv": lambda p: whole(p, encode_video_frame), "rgb": lambda p: whole(p, _rgb_path),
            "decode": lambda p: whole(p, None)}
    fps: dict[str, list[float]] = {k: [] for k in runs}
    parts: dict[str, list[float]] = {k: [] for k in ("rgb_convert", "rgb_resize", "rgb_encode", "yuv_planes_resize",
                                                      "yuv_range", "yuv_encode")}
    for r in range(rounds):
        keys = list(runs)[r % 3:] + list(runs)[: r % 3]
        for k in keys:
            n = s = 0.0
            for path in videos:
                a, b = runs[k](path)
                n, s = n + a, s + b
            fps[k].append(n / s)
        # Parts alone, on one video's frames held in memory at a time.
        acc = dict.fromkeys(parts, 0.0)
        total = 0
        for path in videos:
            frames = list(iter_decoded_frames(path))
            size = target_size(frames[0].width, frames[0].height, short_side)
            t = time.perf_counter()
            rgb = [frame_to_rgb(f) for f in frames]
            acc["rgb_convert"] += time.perf_counter() - t
            t = time.perf_counter()
            small = [resize_frame(x, size) for x in rgb]
            acc["rgb_resize"] += time.perf_counter() - t
            t = time.perf_counter()
            for x in small:
                encode_jpeg(x, quality)
            acc["rgb_encode"] += time.perf_counter() - t
            t = time.perf_counter()
            planes = [resize_yuv420(frame_to_yuv420(f), size) for f in frames]
            acc["yuv_planes_resize"] += time.perf_counter() - t
            t = time.perf_counter()
            jfif = [p.to_jfif() for p in planes]
            acc["yuv_range"] += time.perf_counter() - t
            t = time.perf_counter()
            for p in jfif:
                encode_jpeg_planes(*p, quality=quality)
            acc["yuv_encode"] += time.perf_counter() - t
            total += len(frames)
            del frames, rgb, small, planes, jfif
        for k in parts:
            parts[k].append(acc[k] / total * 1e6)
    ratio = [y / r for y, r in zip(fps["yuv"], fps["rgb"], strict=True)]
    return {"frames_per_s": {k: _spread(v) for k, v in fps.items()}, "yuv_over_rgb": _spread(ratio),
            "parts_us": {k: _spread(v) for k, v in parts.items()}}


def _quality(videos: list[Path], short_side: int | None, every: int = 4) -> dict:
    """Bytes per frame and PSNR (dB, against the decoder's frames resized as the RGB path resizes them) of
    both paths at each quality, on every ``every``-th frame."""
    from vidnet.data.ingest import encode_video_frame, resize_frame, target_size
    from vidnet.data.store import decode_jpeg
    from vidnet.data.video import frame_to_rgb, iter_decoded_frames

    sums = {(p, q): [0.0, 0.0, 0] for p in ("yuv", "rgb") for q in QUALITIES}
    for path in videos:
        for i, frame in enumerate(iter_decoded_frames(path)):
            if i % every:
                continue
            size = target_size(frame.width, frame.height, short_side)
            ref = resize_frame(frame_to_rgb(frame), size).astype(np.float64)
            for q in QUALITIES:
                for p, data in (("yuv", encode_video_frame(frame, size, q)), ("rgb", _rgb_path(frame, size, q))):
                    mse = float(np.mean((decode_jpeg(data).astype(np.float64) - ref) ** 2))
                    s = sums[(p, q)]
                    s[0] += len(data)
                    s[1] += 10 * np.log10(255**2 / max(mse, 1e-10))
                    s[2] += 1
    return {f"{p}_q{q}": {"bytes_per_frame": s[0] / s[2], "psnr_db": s[1] / s[2]} for (p, q), s in sums.items()}


def _convert(src: Path, dst: Path, workers: int, short_side: int | None, quality: int) -> tuple[float, int]:
    from vidnet.data.ingest import ConvertOptions, convert_dataset

    opts = ConvertOptions(workers=workers, short_side=short_side, quality=quality, checksum=False, overwrite=True)
    t = time.perf_counter()
    s = convert_dataset(src, dst, opts)
    return time.perf_counter() - t, s.frames


def _jpeg_folder(dst: Path, out: Path) -> list[tuple[Path, Path, int]]:
    """Write every store's JPEG bytes as frame_%05d.jpg files; return (store, folder, n_frames)."""
    from vidnet.data.store import FrameStore

    items = []
    for db in sorted(dst.rglob("frames.db")):
        folder = out / db.parent.relative_to(dst)
        folder.mkdir(parents=True, exist_ok=True)
        with FrameStore(db) as store:
            n = len(store)
            for i, blob in enumerate(store.get_bytes(range(n))):
                (folder / f"frame_{i + 1:05d}.jpg").write_bytes(blob)
        items.append((db, folder, n))
    return items


def _read_bench(items: list[tuple[str, str, int]], clips: int, seed: int) -> dict[str, float]:
    """Frames per second fetched by random 16-frame index lists: store vs JPEG folder."""
    from vidnet.data.store import FrameStore

    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(clips):
        k = int(rng.integers(len(items)))
        n = items[k][2]
        start = int(rng.integers(0, max(1, n - 16)))
        plan.append((k, np.arange(start, start + 16) % n))
    stores: dict[int, FrameStore] = {}
    t = time.perf_counter()
    nbytes = 0
    for k, idx in plan:
        store = stores.get(k) or stores.setdefault(k, FrameStore(items[k][0]))
        nbytes += sum(map(len, store.get_bytes(idx)))
    t_db = time.perf_counter() - t
    t = time.perf_counter()
    nbytes_jpg = 0
    for k, idx in plan:
        folder = items[k][1]
        for i in idx.tolist():
            with open(os.path.join(folder, f"frame_{i + 1:05d}.jpg"), "rb") as f:
                nbytes_jpg += len(f.read())
    t_jpg = time.perf_counter() - t
    assert nbytes == nbytes_jpg
    frames = clips * 16
    return {"sqlite_fps": frames / t_db, "jpg_fps": frames / t_jpg, "ratio": t_jpg / t_db}


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="640x480", help="WxH of the generated videos")
    ap.add_argument("--short-side", type=int, default=240, help="convert with --short-side N (0: keep the size)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the speed measurements")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the conversion paths")
    ap.add_argument("--clips", type=int, default=2000, help="clips per read benchmark")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--_read-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._read_child:
        items = json.loads(Path(args._read_child[0]).read_text())
        print(json.dumps(_read_bench(items, int(args._read_child[1]), seed=1)))
        return 0

    import cv2

    cv2.setNumThreads(1)  # one core per path, as in a conversion worker
    width, height = map(int, args.size.lower().split("x"))
    short = args.short_side or None
    res: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidnet-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "videos"
        print(f"generating {args.videos} H.264 videos of {args.frames} frames at {width}x{height} ...", flush=True)
        _make_videos(src, args.videos, args.frames, width, height)
        videos = sorted(src.rglob("*.mp4"))
        jpg_before = len(list(Path(tempfile.gettempdir()).rglob("*.jpg")))

        _convert(src, tmp / "warm", 1, short, args.quality)  # imports and codec initialisation, untimed
        paths = _paths(videos, short, args.quality, args.rounds)
        res["paths"] = paths
        f, p = paths["frames_per_s"], paths["parts_us"]
        print(f"\nconversion paths, 1 process, {width}x{height} -> short side {short or 'kept'}, quality "
              f"{args.quality}: frames/s, median of {args.rounds} interleaved rounds (lowest-highest)")
        print(f"  YUV path (planes resized, JPEG from planes): {_fmt(f['yuv'])}")
        print(f"  RGB path (RGB, resize, JPEG from RGB)      : {_fmt(f['rgb'])}")
        print(f"  decoding alone                             : {_fmt(f['decode'])}")
        print(f"  YUV / RGB, round by round: {_fmt(paths['yuv_over_rgb'], 2)} (target >= 1.30)")
        print(f"  parts alone, us/frame: RGB path: to RGB {_fmt(p['rgb_convert'])} + resize {_fmt(p['rgb_resize'])} "
              f"+ encode {_fmt(p['rgb_encode'])}")
        print(f"                         YUV path: resize planes {_fmt(p['yuv_planes_resize'])} + range "
              f"{_fmt(p['yuv_range'])} + encode planes {_fmt(p['yuv_encode'])}")

        quality = _quality(videos, short)
        res["quality"] = quality
        print("\nquality: bytes per frame and PSNR against the decoder's frames (same size)")
        print("  quality | YUV path bytes  PSNR dB | RGB path bytes  PSNR dB")
        for q in QUALITIES:
            y, r = quality[f"yuv_q{q}"], quality[f"rgb_q{q}"]
            print(f"  {q:7d} | {y['bytes_per_frame']:14,.0f}  {y['psnr_db']:7.2f} | {r['bytes_per_frame']:14,.0f}  "
                  f"{r['psnr_db']:7.2f}")

        times: dict[int, list[float]] = {1: [], 2: []}
        n = 0
        for r in range(3):
            for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                t, n = _convert(src, tmp / f"w{w}", w, short, args.quality)
                times[w].append(t)
        single: dict[int, list[float]] = {1: [], 2: []}
        solo = tmp / "solo"
        (solo / videos[0].parent.name).mkdir(parents=True)
        os.symlink(videos[0], solo / videos[0].parent.name / videos[0].name)
        for r in range(3):
            for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                single[w].append(_convert(solo, tmp / f"solo{w}", w, short, args.quality)[0])
        jpg_after = len(list(Path(tempfile.gettempdir()).rglob("*.jpg"))) + len(list(tmp.rglob("*.jpg")))
        parts_sum = f["decode"]["median"] ** -1 * 1e6 + p["yuv_planes_resize"]["median"] + p["yuv_range"]["median"] \
            + p["yuv_encode"]["median"]
        c1 = _spread([n / t for t in times[1]])
        c2 = _spread([n / t for t in times[2]])
        res["convert"] = {"frames": n, "fps_1w": c1, "fps_2w": c2,
                          "speedup_2w": _spread([a / b for a, b in zip(times[1], times[2], strict=True)]),
                          "convert_1w_us": 1e6 / c1["median"], "parts_us": parts_sum,
                          "single_video_2_threads": _spread([a / b for a, b in zip(single[1], single[2], strict=True)]),
                          "temp_jpegs": jpg_after - jpg_before}
        c = res["convert"]
        print(f"\nconvert_dataset ({n} frames, {args.videos} videos, 3 rounds): 1 worker {_fmt(c1)} frames/s, "
              f"2 workers {_fmt(c2)} (speed-up {_fmt(c['speedup_2w'], 2)}, target >= 1.70; cores: {os.cpu_count()})")
        print(f"  1 worker {c['convert_1w_us']:.0f} us/frame against its parts alone (decode + YUV path) "
              f"{parts_sum:.0f} -> ratio {c['convert_1w_us'] / parts_sum:.2f} (target <= 1.20)")
        print(f"  one video, --workers 2 (2 decoder threads) against 1: {_fmt(c['single_video_2_threads'], 2)}x")
        print(f"  temporary JPEG files written: {c['temp_jpegs']}")

        items = _jpeg_folder(tmp / "w1", tmp / "jpg")
        plan_file = tmp / "items.json"
        plan_file.write_text(json.dumps([(str(a), str(b), c) for a, b, c in items]))
        _read_bench([(str(a), str(b), c) for a, b, c in items], 200, seed=0)  # warm the page cache
        warm = _read_bench([(str(a), str(b), c) for a, b, c in items], args.clips, seed=1)
        dropped = _drop_caches()
        out = subprocess.run([sys.executable, __file__, "--_read-child", str(plan_file), str(args.clips)],
                             capture_output=True, text=True, check=True)
        cold = json.loads(out.stdout.strip().splitlines()[-1])
        cold_label = "fresh process, page cache dropped" if dropped else "fresh process (cold-ish: page cache kept)"
        res.update(read_warm=warm, read_cold=cold, cold_mode=cold_label)
        db_bytes = sum(p.stat().st_size for p in (tmp / "w1").rglob("frames.db"))
        jpg_bytes = sum(p.stat().st_size for p in (tmp / "jpg").rglob("*.jpg"))
        res.update(store_bytes=db_bytes, jpg_bytes=jpg_bytes)
        print(f"\nreads: random 16-frame clips, {args.clips} clips, encoded bytes only (decoding is benchmark-io's)")
        print(f"  warm cache       : store {warm['sqlite_fps']:,.0f} vs JPEG folder {warm['jpg_fps']:,.0f} "
              f"frames/s -> {warm['ratio']:.2f}x")
        print(f"  {cold_label}: store {cold['sqlite_fps']:,.0f} vs JPEG folder {cold['jpg_fps']:,.0f} "
              f"frames/s -> {cold['ratio']:.2f}x")
        print(f"  bytes on disk: stores {db_bytes:,} vs JPEG files {jpg_bytes:,} (+ one inode per frame)")
    res["load_after"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t_start
    print(f"\n{res['seconds']:.0f} s on {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
          f"{', '.join(f'{v:.2f}' for v in res['load_before'])} before, "
          f"{', '.join(f'{v:.2f}' for v in res['load_after'])} after")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
