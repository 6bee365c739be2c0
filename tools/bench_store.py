"""Benchmark of `vidnet convert` and of raw frame reads from frames.db stores.

Everything is measured side by side in one run on the same videos, so the ratios are meaningful on a noisy
machine where absolute numbers are not:

* conversion (enough videos that starting the worker processes, about 0.3 s, does not weigh on the
  2-worker figure): seconds per frame of the whole conversion (1 worker) against the sum of its unavoidable parts
  timed alone on the same frames (video decode to RGB, resize, JPEG encode); the 2-worker speed-up; and a
  check that no temporary JPEG file was written;
* reads: frames fetched per second by random 16-frame index lists, from the store (one SQL query per clip)
  and from a folder of the same JPEG bytes (one file per frame), in this process with a warm cache and in a
  fresh process after asking the kernel to drop its page cache (when permitted: "cold-ish" otherwise).

Usage::

    python tools/bench_store.py [--videos 32] [--frames 300] [--size 320x240] [--short-side 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_videos(root: Path, n: int, frames: int, width: int, height: int) -> None:
    from vidnet.testing import write_test_video

    for i in range(n):
        write_test_video(root / f"class{i % 4}" / f"video{i:03d}.mp4", frames, height=height, width=width, seed=i)


def _time_parts(src: Path, short_side: int | None, quality: int) -> tuple[float, int, tuple[float, float, float]]:
    """Seconds for decode + resize + encode of every frame, each step timed alone."""
    import simplejpeg

    from vidnet.data.ingest import resize_frame, target_size
    from vidnet.data.video import iter_video_frames

    t_decode = t_resize = t_encode = 0.0
    n = 0
    for path in sorted(src.rglob("*.mp4")):
        t = time.perf_counter()
        frames = list(iter_video_frames(path))
        t_decode += time.perf_counter() - t
        size = target_size(frames[0].shape[1], frames[0].shape[0], short_side)
        t = time.perf_counter()
        small = [resize_frame(f, size) for f in frames]
        t_resize += time.perf_counter() - t
        t = time.perf_counter()
        for f in small:
            simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=quality, colorspace="RGB", colorsubsampling="420")
        t_encode += time.perf_counter() - t
        n += len(frames)
    return t_decode + t_resize + t_encode, n, (t_decode, t_resize, t_encode)


def _convert(src: Path, dst: Path, workers: int, short_side: int | None, quality: int) -> tuple[float, int]:
    from vidnet.data.ingest import ConvertOptions, convert_dataset

    opts = ConvertOptions(workers=workers, short_side=short_side, quality=quality, checksum=False)
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
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="320x240", help="WxH of the generated videos (UCF-101 is 320x240)")
    ap.add_argument("--short-side", type=int, default=0, help="convert with --short-side N (0: keep size)")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--clips", type=int, default=2000, help="clips per read benchmark")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--_read-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._read_child:
        items = json.loads(Path(args._read_child[0]).read_text())
        print(json.dumps(_read_bench(items, int(args._read_child[1]), seed=1)))
        return 0

    width, height = map(int, args.size.lower().split("x"))
    short = args.short_side or None
    res: dict[str, float | str | bool] = {}
    with tempfile.TemporaryDirectory(prefix="vidnet-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "videos"
        print(f"generating {args.videos} H.264 videos of {args.frames} frames at {width}x{height} ...", flush=True)
        _make_videos(src, args.videos, args.frames, width, height)
        jpg_before = len(list(Path(tempfile.gettempdir()).rglob("*.jpg")))

        # Warm-up: one conversion so that imports and codec initialisation are paid before timing.
        _convert(src, tmp / "warm", 1, short, args.quality)
        parts, n, (td, tr, te) = _time_parts(src, short, args.quality)
        t1, n1 = _convert(src, tmp / "w1", 1, short, args.quality)
        t2, n2 = _convert(src, tmp / "w2", 2, short, args.quality)
        assert n1 == n2 == n, (n, n1, n2)
        jpg_after = len(list(Path(tempfile.gettempdir()).rglob("*.jpg"))) + len(list(tmp.rglob("*.jpg")))
        res.update(
            frames=n, decode_us=td / n * 1e6, resize_us=tr / n * 1e6, encode_us=te / n * 1e6,
            parts_us=parts / n * 1e6, convert_1w_us=t1 / n * 1e6, convert_ratio=t1 / parts,
            fps_1w=n / t1, fps_2w=n / t2, speedup_2w=t1 / t2, temp_jpegs=jpg_after - jpg_before,
        )
        print(f"\nconversion of {n} frames ({width}x{height}, short side {short or 'kept'}, quality {args.quality})")
        print(f"  parts alone      : decode {res['decode_us']:.0f} + resize {res['resize_us']:.0f} + encode "
              f"{res['encode_us']:.0f} = {res['parts_us']:.0f} us/frame")
        print(f"  convert, 1 worker: {res['convert_1w_us']:.0f} us/frame -> ratio {res['convert_ratio']:.2f} "
              f"(target <= 1.20)")
        print(f"  convert, 2 workers: {res['fps_2w']:.0f} vs {res['fps_1w']:.0f} frames/s -> speed-up "
              f"{res['speedup_2w']:.2f}x (target >= 1.70; cores: {os.cpu_count()})")
        print(f"  temporary JPEG files written: {res['temp_jpegs']}")

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
        res.update(read_warm_sqlite_fps=warm["sqlite_fps"], read_warm_jpg_fps=warm["jpg_fps"],
                   read_warm_ratio=warm["ratio"], read_cold_sqlite_fps=cold["sqlite_fps"],
                   read_cold_jpg_fps=cold["jpg_fps"], read_cold_ratio=cold["ratio"], cold_mode=cold_label)
        db_bytes = sum(p.stat().st_size for p in (tmp / "w1").rglob("frames.db"))
        jpg_bytes = sum(p.stat().st_size for p in (tmp / "jpg").rglob("*.jpg"))
        res.update(store_bytes=db_bytes, jpg_bytes=jpg_bytes)
        print(f"\nreads: random 16-frame clips, {args.clips} clips, encoded bytes only (decoding is benchmark-io's)")
        print(f"  warm cache       : store {warm['sqlite_fps']:,.0f} vs JPEG folder {warm['jpg_fps']:,.0f} "
              f"frames/s -> {warm['ratio']:.2f}x")
        print(f"  {cold_label}: store {cold['sqlite_fps']:,.0f} vs JPEG folder {cold['jpg_fps']:,.0f} "
              f"frames/s -> {cold['ratio']:.2f}x")
        print(f"  bytes on disk: stores {db_bytes:,} vs JPEG files {jpg_bytes:,} (+ one inode per frame)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
