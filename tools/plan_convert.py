"""Planning figures for converting a large dataset: store size and conversion speed per core, measured on
generated videos, then extrapolated to whole datasets.

Measured: for each source size, a few H.264 videos of `vidnet.testing.write_test_video` (a sliding texture with
the statistics of natural footage, not real footage: real videos with more detail give larger JPEGs) are
converted by `vidnet.data.ingest.convert_dataset` with one worker, at each short side and JPEG quality, in
``--rounds`` interleaved rounds; the script prints the fastest round's frames/s of the whole conversion
(decode, resize, encode, write, checksum: on a shared machine the fastest is the least disturbed) and stored
bytes per frame. Extrapolated: store size per 1,000 videos of 300 frames (10 s at 30 fps, a Kinetics clip), and the
core-hours and store size of UCF-101 (13,320 videos, about 27 hours at 25 fps: 2.43 M frames), Kinetics-400
(306,245 clips) and Kinetics-700 (650,317 clips) at 300 frames a clip.

Usage::

    python tools/plan_convert.py [--videos 3] [--frames 100] [--rounds 3]
        [--sources 320x240,640x360,1280x720] [--short-sides 128,256] [--qualities 75,90] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

DATASETS = {  # name: (frames, the source size its rate is read at)
    "UCF-101": (27 * 3600 * 25, "320x240"),
    "Kinetics-400": (306_245 * 300, "640x360"),
    "Kinetics-700": (650_317 * 300, "640x360"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sources", default="320x240,640x360,1280x720")
    parser.add_argument("--short-sides", default="128,256")
    parser.add_argument("--qualities", default="75,90")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.testing import write_test_video

    configs = [(source, short, quality) for source in args.sources.split(",")
               for short in map(int, args.short_sides.split(",")) for quality in map(int, args.qualities.split(","))]
    best: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources.split(","):
            width, height = map(int, source.split("x"))
            for i in range(args.videos):
                write_test_video(Path(tmp) / f"src-{source}" / f"c{i % 2}" / f"v{i}.mp4", args.frames, height=height,
                                 width=width, seed=i)
        for r in range(args.rounds):
            for source, short, quality in configs:
                dst = Path(tmp) / f"dst-{source}-{short}-{quality}-{r}"
                s = convert_dataset(Path(tmp) / f"src-{source}", dst,
                                    ConvertOptions(short_side=short, quality=quality, workers=1))
                size = sum(p.stat().st_size for p in dst.rglob("frames.db"))
                row = {"source": source, "short_side": short, "quality": quality,
                       "frames_per_s": s.frames / s.seconds, "bytes_per_frame": size / s.frames}
                key = (source, short, quality)
                if key not in best or row["frames_per_s"] > best[key]["frames_per_s"]:
                    best[key] = row
    results = [best[c] for c in configs]
    print(f"measured (1 worker, generated videos, fastest of {args.rounds} rounds):")
    print(f"{'source':>9} {'short':>5} {'q':>3} {'frames/s/core':>13} {'KB/frame':>8} {'GB/1000 videos':>14}")
    for r in results:
        print(f"{r['source']:>9} {r['short_side']:>5} {r['quality']:>3} {r['frames_per_s']:>13.0f} "
              f"{r['bytes_per_frame'] / 1e3:>8.1f} {r['bytes_per_frame'] * 300 * 1000 / 1e9:>14.2f}")
    print("\nextrapolated (300 frames a Kinetics clip; rate of the source size named):")
    print(f"{'dataset':>13} {'frames':>8} {'source':>8} {'short':>5} {'q':>3} {'core-hours':>10} {'store GB':>8}")
    for name, (frames, source) in DATASETS.items():
        for r in results:
            if r["source"] != source:
                continue
            print(f"{name:>13} {frames / 1e6:>7.1f}M {source:>8} {r['short_side']:>5} {r['quality']:>3} "
                  f"{frames / r['frames_per_s'] / 3600:>10.0f} {frames * r['bytes_per_frame'] / 1e9:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
