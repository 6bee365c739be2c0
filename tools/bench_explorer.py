"""Size and time of ``report.html`` (the results explorer) at the scale of UCF-101's test split.

UCF-101 split 1 tests 3,783 videos of 101 classes at 320x240. This script converts a few generated
320x240 videos (``vidnet sample``), lays out a dataset of ``--clips`` videos of ``--classes`` classes whose store
folders link to them, writes predictions with a ``--wrong`` share of mistakes, then times `write_explorer`
(thumbnails in parallel, page) and, when ``chromium`` is installed, the page's load in a headless browser.

Usage::

    python tools/bench_explorer.py [--clips 3783] [--classes 101] [--wrong 0.3] [--workers 0] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def _dataset(work: Path, clips: int, classes: int) -> Path:
    from vidnet.data.index import IndexRow, label_map, write_index, write_labels
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    real = work / "frames"
    if not (real / "index.csv").is_file():
        make_sample_dataset(work / "videos", SampleOptions(classes=8, videos_per_class=6, min_frames=100,
                                                           max_frames=200, width=320, height=240))
        convert_dataset(work / "videos", real, ConvertOptions())
    from vidnet.data.index import read_index

    stores = [real / r.path for r in read_index(real / "index.csv")]
    root = work / "ucf"
    shutil.rmtree(root, ignore_errors=True)
    rows = []
    for i in range(clips):
        label = f"class_{i % classes:03d}"
        folder = root / label / f"v_{i:05d}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(stores[i % len(stores)].resolve(), target_is_directory=True)
        rows.append(IndexRow(label, folder.name, split="test", n_frames=0, path=f"{label}/{folder.name}"))
    write_index(root / "index.csv", rows)
    write_labels(root / "labels.json", label_map(r.label for r in rows))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=3783)
    ap.add_argument("--classes", type=int, default=101)
    ap.add_argument("--wrong", type=float, default=0.3, help="share of mispredicted clips")
    ap.add_argument("--workers", type=int, default=0, help="thumbnail threads (0: the number of CPUs)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (kept; default a temporary one)")
    args = ap.parse_args()

    from vidnet.data.index import read_index
    from vidnet.eval.explorer import ThumbnailOptions, write_explorer
    from vidnet.eval.multiview import Predictions

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_explorer_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    root = _dataset(work, args.clips, args.classes)
    print(f"dataset of {args.clips} clips in {time.perf_counter() - t:.1f} s: {root}")
    rows = read_index(root / "index.csv")
    names = sorted({r.label for r in rows})
    labels = np.array([names.index(r.label) for r in rows])
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(rows), 1, len(names))).astype(np.float32)
    wrong = rng.random(len(rows)) < args.wrong
    target = np.where(wrong, (labels + rng.integers(1, len(names), len(rows))) % len(names), labels)
    logits[np.arange(len(rows)), 0, target] += 6
    test = work / "test"
    test.mkdir(exist_ok=True)
    Predictions(keys=[r.key for r in rows], labels=labels, class_names=names, logits=logits,
                model="synthetic 1 view", video_ids=[r.id for r in rows]).save(test / "video_logits.npz")
    (test / "summary.json").write_text(json.dumps({
        "checkpoint": "synthetic.pth", "network": "synthetic", "dataset": str(root), "dataset_root": str(root),
        "split": "test", "clip_length": 16, "interval": 2,
        "video": {"protocol": "video accuracy", "videos": len(rows), "top1": float(1 - wrong.mean())}}))
    out = work / "page"
    cpu = time.process_time()
    res = write_explorer(out, test, thumbnails=ThumbnailOptions(workers=args.workers or None))
    cpu = time.process_time() - cpu
    missed = int((logits[:, 0].argmax(1) != labels).sum())
    print(f"{args.clips} clips, {args.classes} classes, {missed} mispredicted, "
          f"{os.cpu_count()} CPUs: {res.seconds:.1f} s ({cpu:.1f} CPU s, load average "
          f"{os.getloadavg()[0]:.1f}); page {res.page_bytes / 1e6:.2f} MB, "
          f"{res.thumbnails} thumbnails {res.thumb_bytes / 1e6:.2f} MB "
          f"({res.thumb_bytes / max(1, res.thumbnails) / 1e3:.1f} kB each); {len(res.failed)} failed")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if chromium:
        t = time.perf_counter()
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                        f"--user-data-dir={work / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                        res.page.resolve().as_uri()], capture_output=True, check=True, timeout=300)
        print(f"headless chromium: started, loaded, drew and dumped the page in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
