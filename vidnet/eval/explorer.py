"""``report.html``: one self-contained, offline page to explore a run's results, and look at the clips.

The page holds the run (config, dataset, network, best epoch, every protocol's accuracies), its training
curves, the confusion matrix as a heatmap whose cells list their clips, per-class accuracy with each class's
worst clips, and every mispredicted clip with an animated thumbnail, its true label, top-5 and store key;
given a second model (a run, a ``vidnet test`` folder or a ``vidnet fuse`` output), which clips one model gets
right and the other wrong.

Offline by construction: CSS, script and data are inline, the thumbnails are files beside the page
(``report_files/``, loaded lazily), and nothing names another host. The thumbnails are small animated WebP
images of the frames a model samples, read straight from each video's ``frames.db``, encoded in parallel.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidnet._io import atomic_path, atomic_write_text
from vidnet.data.index import IndexRow, read_index
from vidnet.data.sampling import CentreClip
from vidnet.data.store import FrameStore, StoreError
from vidnet.errors import UsageError, VidnetError
from vidnet.eval._explorer_page import PAGE_CSS, PAGE_JS
from vidnet.eval.fusion import align
from vidnet.eval.metrics import topk_indices
from vidnet.eval.multiview import Predictions

__all__ = ["ThumbnailOptions", "ExplorerResult", "thumbnail_frames", "encode_thumbnail", "load_comparison",
           "write_explorer", "PAGE_NAME", "FILES_DIR"]

PAGE_NAME = "report.html"
#: Folder beside the page that holds the thumbnails.
FILES_DIR = "report_files"
#: Top predictions shown per clip.
TOP = 5


@dataclass(frozen=True)
class ThumbnailOptions:
    """How clips are drawn.

    Attributes:
        max_side: longest side of a thumbnail, in pixels.
        min_frames: a model's centre clip shorter than this (a single-frame model's one frame) is extended,
            centred, to this many frames so that the thumbnail still shows the motion.
        max_frames: a longer clip is thinned to this many frames, spread evenly over it.
        quality: WebP quality (0-100), lowered for a thumbnail over its share of ``budget_mb``.
        budget_mb: the thumbnails' total size to aim at (a few MB for UCF-101's 3,783 test videos): the quality
            of a page's thumbnails is lowered in 60 % steps (down to 10) until a sample of 8 averages at most
            ``budget_mb / count``; one over twice that is encoded again at a lower quality.
        workers: threads encoding thumbnails (decoding, resizing and encoding release the GIL); None: the
            number of CPUs.
    """

    max_side: int = 96
    min_frames: int = 8
    max_frames: int = 16
    quality: int = 50
    budget_mb: float = 5.0
    workers: int | None = None

    def __post_init__(self) -> None:
        if not 16 <= self.max_side <= 512:
            raise UsageError(f"thumbnail size must be 16-512 pixels, got {self.max_side}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise UsageError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 0 <= self.quality <= 100:
            raise UsageError(f"thumbnail quality must be 0-100, got {self.quality}")
        if not self.budget_mb > 0:
            raise UsageError(f"thumbnail budget must be positive, got {self.budget_mb} MB")


@dataclass
class ExplorerResult:
    """What `write_explorer` wrote.

    Attributes:
        page: the ``report.html``.
        thumbnails: thumbnails written.
        failed: ``(key, reason)`` of clips whose thumbnail could not be drawn (shown on the page too).
        page_bytes: size of the page; thumb_bytes: total size of the thumbnails.
        seconds: wall time.
    """

    page: Path
    thumbnails: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    page_bytes: int = 0
    thumb_bytes: int = 0
    seconds: float = 0.0


def thumbnail_frames(n_frames: int, clip_length: int, interval: int, opts: ThumbnailOptions) -> np.ndarray:
    """Frame indices a thumbnail shows: the model's centre clip (``clip_length`` frames ``interval`` apart, the
    clip ``vidnet test`` scores for clip accuracy), extended to ``min_frames`` or thinned to ``max_frames``."""
    length = max(int(clip_length), opts.min_frames)
    idx = CentreClip(interval=max(1, int(interval))).sample(n_frames, length)
    if len(idx) > opts.max_frames:
        idx = idx[np.linspace(0, len(idx) - 1, opts.max_frames).round().astype(np.int64)]
    return idx


def _animation(store_path: str | os.PathLike, clip_length: int, interval: int, opts: ThumbnailOptions
               ) -> tuple[Any, np.ndarray]:
    """The frames of a thumbnail as an OpenCV ``Animation`` (BGR, scaled down), and their indices."""
    import cv2

    if not hasattr(cv2, "imencodeanimation"):
        raise VidnetError(f"OpenCV {cv2.__version__} cannot encode animations: pip install "
                          "'opencv-python-headless>=4.12'")
    reader = FrameStore(store_path)
    try:
        n = len(reader)
        if n < 1:
            raise StoreError(f"{store_path}: the store holds no frames")
        idx = thumbnail_frames(n, clip_length, interval, opts)
        h, w = reader.meta.height, reader.meta.width
        scale = opts.max_side / max(h, w, 1)
        size = (max(2, round(w * scale)), max(2, round(h * scale))) if h and w else None
        frames = reader.get_frames(idx, min_size=(size[1], size[0]) if size else None)
        fps = reader.meta.fps or 25.0
    finally:
        reader.close()
    if size is None:
        fh, fw = frames.shape[1:3]
        scale = opts.max_side / max(fh, fw)
        size = (max(2, round(fw * scale)), max(2, round(fh * scale)))
    anim = cv2.Animation()
    anim.frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].copy() for f in frames]
    anim.durations = [int(min(250, max(40, round(1000 * max(1, interval) / fps))))] * len(frames)
    anim.loop_count = 0
    return anim, idx


def _encode(anim: Any, quality: float, where: str | os.PathLike) -> bytes:
    import cv2

    ok, buf = cv2.imencodeanimation(".webp", anim, [cv2.IMWRITE_WEBP_QUALITY, round(quality)])
    if not ok:
        raise VidnetError(f"{where}: OpenCV could not encode an animated WebP")
    return buf.tobytes()


def encode_thumbnail(store_path: str | os.PathLike, clip_length: int, interval: int, opts: ThumbnailOptions,
                     *, quality: float | None = None, max_bytes: int | None = None) -> tuple[bytes, np.ndarray]:
    """An animated WebP of a store's `thumbnail_frames`, its longest side ``opts.max_side``, playing at the
    store's frame rate times ``interval`` (clamped to 40-250 ms a frame), at ``quality`` (default
    ``opts.quality``); over ``max_bytes``, encoded again at 60 % of the quality until it fits or reaches 10.

    Returns:
        ``(webp bytes, frame indices)``.

    Raises:
        StoreError, VidnetError: the store cannot be read, or the encoder is missing.
    """
    anim, idx = _animation(store_path, clip_length, interval, opts)
    q = float(opts.quality if quality is None else quality)
    while True:
        data = _encode(anim, q, store_path)
        if max_bytes is None or len(data) <= max_bytes or q <= 10:
            return data, idx
        q = max(10.0, q * 0.6)


def _calibrate(paths: list[Path], clip_length: int, interval: int, opts: ThumbnailOptions, share: int) -> float:
    """The highest quality (``opts.quality``, then 60 % steps down to 10) whose thumbnails of up to 8 clips,
    spread over ``paths``, average at most ``share`` bytes: one quality for every thumbnail of a page."""
    pick = [paths[i] for i in sorted({round(x) for x in np.linspace(0, len(paths) - 1, min(8, len(paths)))})]
    anims = []
    for p in pick:
        try:
            anims.append(_animation(p, clip_length, interval, opts)[0])
        except (StoreError, VidnetError, OSError):
            continue
    q = float(opts.quality)
    while anims and q > 10 and np.mean([len(_encode(a, q, "calibration")) for a in anims]) > share:
        q = max(10.0, q * 0.6)
    return q


def _thumb_name(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".webp"


def _resolve_predictions(path: Path, protocol: str) -> Predictions:
    """Predictions from an ``.npz``, a ``vidnet test`` / ``fuse --out`` folder, or a run with a test inside."""
    if path.is_file():
        return Predictions.load(path)
    if not path.is_dir():
        raise UsageError(f"{path}: no such predictions file, test folder or run folder")
    for name in (f"{protocol}_logits.npz", "fused_logits.npz"):
        if (path / name).is_file():
            return Predictions.load(path / name)
    from vidnet.eval.run_report import find_test_summaries

    for found, _ in find_test_summaries(path):
        if (found.parent / f"{protocol}_logits.npz").is_file():
            return Predictions.load(found.parent / f"{protocol}_logits.npz")
    raise UsageError(f"{path}: no {protocol}_logits.npz or fused_logits.npz in it, nor a vidnet test output of it")


def load_comparison(path: str | os.PathLike, protocol: str = "video") -> Predictions:
    """The model to compare with: a ``*_logits.npz``, a ``vidnet test`` or ``vidnet fuse --out`` folder
    (``<protocol>_logits.npz`` or ``fused_logits.npz``), or a run folder with a ``vidnet test`` output.

    Raises:
        UsageError: nothing usable at ``path``.
        VidnetError: an unreadable predictions file.
    """
    return _resolve_predictions(Path(path), protocol)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _round(a: np.ndarray, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _dataset_root(summary: dict[str, Any], test_dir: Path, dataset: str | os.PathLike | None) -> Path:
    candidates = [Path(dataset)] if dataset is not None else [
        Path(p) for p in (summary.get("dataset_root"), summary.get("dataset")) if p]
    tried = []
    for c in candidates:
        for p in ([c] if c.is_absolute() else [Path.cwd() / c, test_dir / c]):
            if (p / "index.csv").is_file():
                return p
            tried.append(str(p))
    raise UsageError(f"the tested dataset was not found (tried {', '.join(tried) or 'nothing'}): give --dataset")


def _run_section(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    from vidnet.eval.run_report import best_epoch, read_run

    logs = read_run(run_dir)
    curves = {}
    for phase, log in (("train", logs.train), ("val", logs.val)):
        curves[phase] = {"epoch": log.epochs, **{k: [_finite(x) for x in v] for k, v in log.columns.items()}}
    best = best_epoch(logs.val)
    import yaml

    return {
        "dir": str(logs.run_dir), "epochs": (logs.train.epochs[-1] + 1) if len(logs.train) else None,
        "best": {k: _finite(v) for k, v in logs.val.row(best).items()} if best is not None else None,
        "curves": curves, "config": yaml.safe_dump(logs.config, sort_keys=False) if logs.config else "",
        "network": (logs.config.get("model") or {}).get("network"),
        "dataset": (logs.config.get("data") or {}).get("dataset"),
    }


def _clip_table(p: Predictions) -> tuple[dict[str, Any], np.ndarray]:
    """The page's columns of one model's clips (top-5 and scores, probability of the true class), and its
    top-1 predictions (ties to the lower class, as `vidnet test` counts them)."""
    lp = p.log_probs()
    top = topk_indices(lp, TOP)
    probs = np.exp(lp)
    rows = np.arange(len(top))
    pred = top[:, 0]
    ptrue = np.where(p.labels >= 0, probs[rows, np.maximum(p.labels, 0)], np.nan)
    table = {
        "key": list(p.keys), "id": list(p.video_ids or []),
        "t0": [None if math.isnan(t) else float(t) for t in p.time_start],
        "t1": [None if math.isnan(t) else float(t) for t in p.time_end],
        "label": p.labels.astype(int).tolist(), "top": top.tolist(),
        "score": _round(np.take_along_axis(probs, top, axis=1)), "ptrue": [_finite(x) for x in _round(ptrue)],
    }
    return table, pred


def write_explorer(
    out: str | os.PathLike,
    test_dir: str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    protocol: str = "video",
    compare: Predictions | None = None,
    compare_name: str | None = None,
    dataset: str | os.PathLike | None = None,
    thumbnails: ThumbnailOptions | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> ExplorerResult:
    """Write ``out/report.html`` and its thumbnails (``out/report_files/``) for a ``vidnet test`` output.

    Args:
        out: folder of the page.
        test_dir: a ``vidnet test`` output folder (``summary.json``, ``<protocol>_logits.npz``).
        run_dir: the training run (curves, config, best epoch); None: a page without them.
        protocol: which protocol's predictions the page explores (``video``, ``clip``, ``frames``, ...).
        compare: a second model's predictions of the same videos (see `load_comparison`).
        compare_name: its name on the page.
        dataset: the dataset root, when the test's own path no longer resolves.
        thumbnails: how clips are drawn.
        progress: called with ``(done, total)`` thumbnails, first with ``done=0``.

    Raises:
        UsageError: missing inputs; VidnetError: unreadable ones or models that cover other videos.
    """
    t0 = time.perf_counter()
    opts = thumbnails or ThumbnailOptions()
    out, test_dir = Path(out), Path(test_dir)
    summary_path = test_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{test_dir}: no summary.json (not a vidnet test output folder)") from None
    except (OSError, ValueError) as err:
        raise VidnetError(f"{summary_path}: not readable JSON ({err})") from None
    npz = test_dir / f"{protocol}_logits.npz"
    if not npz.is_file():
        have = sorted(p.name.removesuffix("_logits.npz") for p in test_dir.glob("*_logits.npz"))
        raise UsageError(f"{npz}: no such file (protocols here: {', '.join(have) or 'none'})")
    preds = Predictions.load(npz)
    dup = preds.duplicate_keys()
    if dup:
        raise VidnetError(f"{npz}: video key {dup[0]!r} repeats (written by an older vidnet that keyed videos by "
                          "id); run `vidnet test` again")
    root = _dataset_root(summary, test_dir, dataset)
    rows: dict[str, IndexRow] = {r.key: r for r in read_index(root / "index.csv")}
    names = preds.class_names
    clips, pred = _clip_table(preds)
    known = preds.labels >= 0
    wrong = known & (pred != preds.labels)
    need = wrong.copy()

    cmp_data = None
    if compare is not None:
        idx = align([preds, compare])[1]
        other = compare if idx is None else Predictions(
            keys=[compare.keys[i] for i in idx], labels=compare.labels[idx], class_names=compare.class_names,
            logits=compare.logits[idx], model=compare.model)
        other_table, other_pred = _clip_table(other)
        other_wrong = known & (other_pred != other.labels)
        need |= other_wrong
        cmp_data = {"name": compare_name or other.model or "model B", "top": other_table["top"],
                    "score": other_table["score"], "ptrue": other_table["ptrue"]}

    files = out / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    clip_length = int(summary.get("clip_length") or opts.min_frames)
    interval = int(summary.get("interval") or 1)
    todo = np.flatnonzero(need).tolist()
    thumbs: list[str | None] = [None] * len(preds.keys)
    frames: list[list[int] | None] = [None] * len(preds.keys)
    failed: list[tuple[str, str]] = []
    wanted = {_thumb_name(preds.keys[i]) for i in todo}
    for stale in files.glob("*.webp"):
        if stale.name not in wanted:
            stale.unlink()

    def draw(i: int) -> tuple[int, str | None, list[int] | None, str | None]:
        key = preds.keys[i]
        row = rows.get(key)
        if row is None or not row.path:
            return i, None, None, f"not in {root / 'index.csv'}" if row is None else "not converted"
        try:
            data, idx = encode_thumbnail(root / row.path, clip_length, interval, opts, quality=quality,
                                         max_bytes=2 * share)
        except (StoreError, VidnetError, OSError) as err:
            return i, None, None, str(err)
        name = _thumb_name(key)
        with atomic_path(files / name) as tmp:
            tmp.write_bytes(data)
        return i, f"{FILES_DIR}/{name}", idx.tolist(), None

    share = int(opts.budget_mb * 1e6 / max(1, len(todo)))
    paths = [root / rows[preds.keys[i]].path for i in todo if preds.keys[i] in rows and rows[preds.keys[i]].path]
    quality = _calibrate(paths, clip_length, interval, opts, share)
    if progress:
        progress(0, len(todo))
    thumb_bytes = 0
    with ThreadPoolExecutor(max_workers=opts.workers or os.cpu_count() or 1) as pool:
        for done, (i, rel, idx, err) in enumerate(pool.map(draw, todo), 1):
            if err is not None:
                failed.append((preds.keys[i], err))
            else:
                thumbs[i], frames[i] = rel, idx
                thumb_bytes += (out / rel).stat().st_size
            if progress:
                progress(done, len(todo))
    clips["thumb"], clips["frames"] = thumbs, frames
    clips["thumb_error"] = dict(failed)

    protocols = []
    for name, res in summary.items():
        if isinstance(res, dict) and "top1" in res:
            protocols.append({"name": name, "title": res.get("protocol", name), "videos": res.get("videos"),
                              "topk": {k[3:]: v for k, v in res.items() if k.startswith("top") and k[3:].isdigit()},
                              "mean_class_accuracy": res.get("mean_class_accuracy"), "loss": res.get("loss")})
    run = _run_section(Path(run_dir)) if run_dir is not None else None
    network = (run or {}).get("network") or summary.get("network") or preds.model
    data = {
        "title": f"{network} on {Path(str(summary.get('dataset') or root)).name} [{summary.get('split', '?')}]",
        "network": network, "model": preds.model, "protocol": protocol,
        "protocol_title": (summary.get(protocol) or {}).get("protocol", protocol),
        "test": {k: summary.get(k) for k in ("checkpoint", "dataset", "split", "clips", "crops", "clip_length",
                                              "interval", "seconds")},
        "dataset_root": str(root), "protocols": protocols, "run": run, "classes": names,
        "clips": clips, "compare": cmp_data,
        "thumbs": {"max_side": opts.max_side, "min_frames": opts.min_frames, "max_frames": opts.max_frames,
                   "clip_length": clip_length, "interval": interval, "failed": len(failed)},
    }
    page = out / PAGE_NAME
    text = _render(data, n_classes=len(names), n_clips=len(preds.keys), n_wrong=int(wrong.sum()))
    atomic_write_text(page, text)
    return ExplorerResult(page=page, thumbnails=sum(t is not None for t in thumbs), failed=failed,
                          page_bytes=len(text.encode("utf-8")), thumb_bytes=thumb_bytes,
                          seconds=time.perf_counter() - t0)


def _render(data: dict[str, Any], *, n_classes: int, n_clips: int, n_wrong: int) -> str:
    # "<" escaped inside the JSON so that no string (a class name, a key) can close the script element.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    title = html.escape(f"vidnet results: {data['title']}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # No request may leave the page: only inline code and data, and images from this folder.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<title>{title}</title>\n<style>{PAGE_CSS}</style>\n</head>\n"
        f"<body data-classes=\"{n_classes}\" data-clips=\"{n_clips}\" data-wrong=\"{n_wrong}\">\n"
        f"<header><h1>{title}</h1><div id=\"run\"></div></header>\n"
        "<nav><a href=\"#summary\">summary</a> <a href=\"#curves-section\">curves</a> "
        "<a href=\"#confusion-section\">confusion</a> <a href=\"#classes-section\">classes</a> "
        "<a href=\"#clips-section\">clips</a> <a href=\"#compare-section\">comparison</a></nav>\n"
        "<main>\n"
        "<section id=\"summary\"><h2>Summary</h2><div id=\"protocols\"></div><details><summary>resolved config"
        "</summary><pre id=\"config\"></pre></details></section>\n"
        "<section id=\"curves-section\"><h2>Training curves</h2><p class=\"hint\">hover a point to read it</p>"
        "<div id=\"curves\"></div><p id=\"readout\" class=\"hint\"></p></section>\n"
        "<section id=\"confusion-section\"><h2>Confusion matrix</h2><p>order <select id=\"cm-order\">"
        "<option value=\"class\">by class</option><option value=\"confusion\">by confusion</option>"
        "<option value=\"accuracy\">by accuracy</option></select> <span class=\"hint\">rows: true class, columns: "
        "predicted, colour: fraction of the row; click a cell to list its clips</span></p><div id=\"cm\"></div>"
        "</section>\n"
        "<section id=\"classes-section\"><h2>Per-class accuracy</h2><table id=\"classes\"><thead><tr>"
        "<th data-sort=\"name\">class</th><th data-sort=\"videos\">videos</th><th data-sort=\"acc\">accuracy</th>"
        "<th data-sort=\"conf\">most often taken for</th><th>worst clips</th></tr></thead><tbody></tbody></table>"
        "</section>\n"
        "<section id=\"clips-section\"><h2>Clips</h2><div class=\"filters\">"
        "true <select id=\"f-true\"></select> predicted <select id=\"f-pred\"></select> "
        "<label><input type=\"checkbox\" id=\"f-wrong\" checked> mispredicted only</label> "
        "confidence <input id=\"f-min\" type=\"number\" min=\"0\" max=\"1\" step=\"0.05\" value=\"0\"> to "
        "<input id=\"f-max\" type=\"number\" min=\"0\" max=\"1\" step=\"0.05\" value=\"1\"> "
        "<select id=\"f-cmp\"></select> key <input id=\"f-text\" type=\"search\" size=\"14\"> "
        "<button id=\"f-reset\">reset</button></div>"
        "<p id=\"clip-count\"></p><div id=\"clips\"></div><button id=\"more\" hidden>show more</button></section>\n"
        "<section id=\"compare-section\"><h2>Comparison</h2><div id=\"compare\"></div></section>\n"
        "</main>\n"
        f"<script type=\"application/json\" id=\"vidnet-data\">{payload}</script>\n"
        f"<script>{PAGE_JS}</script>\n</body>\n</html>\n"
    )

