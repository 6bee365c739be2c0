"""``report.html`` opened in a real headless browser (Debian's ``chromium``): counts, screenshot, thumbnails,
a click on a confusion cell, and no request leaving the page.

The page is rendered for a real run: the sample dataset, a one-epoch training, ``vidnet test --html``; and for
the quickstart's run, whose screenshot is the README's picture (``VIDNET_UPDATE_DOCS=1`` writes it).
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.data.index import read_index
from vidnet.data.store import FrameStore
from vidnet.eval.multiview import Predictions

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                                            ".ci/run installs it)")


def browse(page: Path, tmp: Path, *args: str) -> str:
    """Run headless chromium on ``page`` (a fresh profile, no network, 5 s of virtual time); its stdout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND", *args,
           page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """A run on the sample dataset (4 classes, 4 val videos), `vidnet test --html` of it; (run, test dir, output)."""
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    base = tmp_path_factory.mktemp("explorer")
    make_sample_dataset(base / "videos", SampleOptions(classes=4, videos_per_class=4, min_frames=16, max_frames=24,
                                                       width=64, height=48, workers=1))
    assert convert_dataset(base / "videos", base / "frames", ConvertOptions(workers=1)).failed == 0
    cfg = TrainConfig.from_flat({
        "network": "tiny_3d", "dataset": str(base / "frames"), "model_dir": str(base / "runs"), "workers": 0,
        "batch_size": 4, "end_epoch": 1, "clip_length": 4, "clip_size": 16, "train_frame_interval": "1",
        "val_frame_interval": 2, "tensorboard": False,
    })
    run = train(cfg).run_dir
    r = CliRunner().invoke(app, ["test", "-c", str(run / "checkpoints" / "ep-0001.pth"), "-d", str(base / "frames"),
                                 "--clips", "2", "--crops", "1", "--html"])
    assert r.exit_code == 0, r.output
    return run, run / "test-val", r.output, base / "frames"


def _expected_wrong(output: str, views: str = "2 clips x 1 crops") -> tuple[int, int]:
    """(videos, mispredicted) from what `vidnet test` printed for video accuracy."""
    m = re.search(rf"video accuracy \({views}\):\s+top1 ([\d.]+)%.*\((\d+) videos\)", output)
    assert m, output
    n = int(m.group(2))
    return n, round(n * (1 - float(m.group(1)) / 100))


def _predictions(test_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((test_dir / "video_predictions.csv").open()))


def test_page_is_offline_and_self_contained(explored):
    _, test_dir, output, _ = explored
    assert re.search(r"wrote .*report\.html \([\d.]+ MB, \d+ thumbnails", output)
    text = (test_dir / "report.html").read_text()
    # Nothing names another host: no URL scheme but the page's own folder, no CDN, no remote font.
    assert not re.search(r"\b(https?|ftp|wss?):", text) and "//" not in re.sub(r"(?s)<script>.*?</script>", "", text)
    sources = re.findall(r'src="([^"]*)"', text) + re.findall(r'"thumb":\[([^\]]*)\]', text)
    assert all(not s.startswith(("/", "http")) for s in sources)
    assert "default-src 'none'" in text  # the browser itself refuses any other request


@needs_browser
def test_dom_counts_match_vidnet_test(explored, tmp_path):
    _, test_dir, output, _ = explored
    dom = browse(test_dir / "report.html", tmp_path, "--dump-dom")
    n, wrong = _expected_wrong(output)
    assert wrong > 0  # a one-epoch model: the page has mistakes to show
    assert re.search(r'id="n-classes" data-count="4"', dom) and re.search(rf'id="n-clips" data-count="{n}"', dom)
    assert re.search(rf'id="n-wrong" data-count="{wrong}"', dom)
    assert dom.count('class="clip"') == wrong  # every mispredicted clip has its card (under one page of 60)
    assert dom.count('class="class-row"') == 4
    # The 4x4 heatmap's cells and the curves' points (the script's own text holds no digit after data-t=").
    assert len(re.findall(r'<rect class="cell" data-t="\d', dom)) == 16 and dom.count("<circle") >= 6
    preds = _predictions(test_dir)
    keys = re.findall(r'class="clip" data-i="\d+" data-key="([^"]+)"', dom)
    assert sorted(keys) == sorted(r["key"] for r in preds if r["pred1"] != r["label"])


@needs_browser
def test_screenshot_is_a_real_picture(explored, tmp_path):
    _, test_dir, _, _ = explored
    shot = tmp_path / "page.png"
    browse(test_dir / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,1400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(shot))
    assert img.shape == (1400, 1280, 3)
    # Not blank: the header bar is dark, the page light, and the heatmap, curves and thumbnails add colour.
    assert img.std() > 30 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500


def test_thumbnails_are_the_sampled_frames(explored):
    run, test_dir, _, frames = explored
    data = json.loads(re.search(r'id="vidnet-data">(.*?)</script>', (test_dir / "report.html").read_text()).group(1))
    clips, rows = data["clips"], {r.key: r for r in read_index(frames / "index.csv")}
    drawn = [i for i, t in enumerate(clips["thumb"]) if t]
    assert len(drawn) == _expected_wrong(explored[2])[1]
    for i in drawn:
        ok, anim = cv2.imdecodeanimation(np.fromfile(test_dir / clips["thumb"][i], np.uint8))
        idx = clips["frames"][i]
        # tiny_3d sees 4 frames 2 apart; the thumbnail extends that centre clip to 8 frames (a 96-px animation).
        store = FrameStore(frames / rows[clips["key"][i]].path)
        n = len(store)  # 16-24 frames: the 15-frame span fits, centred
        assert ok and len(anim.frames) == len(idx) == 8 and idx == [(n - 14) // 2 + 2 * k for k in range(8)]
        assert max(anim.frames[0].shape[:2]) == 96
        # Drawn from the store: the first thumbnail frame is that store frame, scaled down (lossy WebP).
        first = cv2.resize(store.get_frames([idx[0]])[0], anim.frames[0].shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(first.astype(int) - anim.frames[0][:, :, 2::-1].astype(int)).mean() < 12
        store.close()


# First in <head>: records every request the page's security policy refused (any that would leave the folder).
WATCH = """<head><script>
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.violations.push(e.blockedURI));
</script>"""

PROBE = """<script>
(async () => {
  for (const img of document.images) img.loading = "eager";
  const cell = document.querySelector('#cm rect.cell[data-t="%(t)d"][data-p="%(p)d"]');
  cell.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  const keys = [...document.querySelectorAll("#clips .clip")].map((c) => c.dataset.key);
  const imgs = [...document.querySelectorAll("#clips img")];
  await Promise.all(imgs.map((im) => im.decode().catch(() => null)));
  const out = document.createElement("pre");
  out.id = "probe";
  await new Promise((ok) => setTimeout(ok, 500));
  out.textContent = JSON.stringify({keys, pair: document.getElementById("clips-section").dataset.pair,
    sizes: imgs.map((im) => [im.naturalWidth, im.naturalHeight]), violations: window.violations,
    resources: performance.getEntriesByType("resource").map((e) => e.name)});
  document.body.append(out);
})();
</script>
"""


@needs_browser
def test_clicking_a_confusion_cell_lists_that_pairs_clips(explored, tmp_path):
    _, test_dir, _, _ = explored
    preds = _predictions(test_dir)
    names = Predictions.load(test_dir / "video_logits.npz").class_names
    pairs = [(names.index(r["label"]), names.index(r["pred1"])) for r in preds if r["label"] != r["pred1"]]
    t, p = max(set(pairs), key=pairs.count)
    page = test_dir / "probe.html"  # beside the page, so that its thumbnails resolve
    text = (test_dir / "report.html").read_text().replace("<head>", WATCH, 1)
    page.write_text(text.replace("</body>", PROBE % {"t": t, "p": p} + "</body>"))
    dom = browse(page, tmp_path, "--dump-dom")
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
    expected = [r["key"] for r in preds if (r["label"], r["pred1"]) == (names[t], names[p])]
    assert sorted(probe["keys"]) == sorted(expected) and len(expected) == pairs.count((t, p))
    assert probe["pair"] == f"{t},{p}"
    assert probe["sizes"] and all(w == 96 and h == 72 for w, h in probe["sizes"])  # decoded by the browser
    # Nothing left the page: no request refused by its policy, none loaded from elsewhere.
    assert probe["violations"] == [] and all(u.startswith("file://") for u in probe["resources"])
    # ... and the watch does see one: the same page with a remote image added.
    bad = test_dir / "bad.html"
    bad.write_text(page.read_text().replace("</main>", '<img src="https://example.invalid/x.png"></main>'))
    dom = browse(bad, tmp_path, "--dump-dom")
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
    assert probe["violations"] == ["https://example.invalid/x.png"]


@needs_browser
def test_report_html_compares_two_models(explored, tmp_path):
    run, test_dir, _, _ = explored
    r = CliRunner().invoke(app, ["report", str(run), "--html", "--compare", str(test_dir / "clip_logits.npz"),
                                 "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    a, b = Predictions.load(test_dir / "video_logits.npz"), Predictions.load(test_dir / "clip_logits.npz")
    ra = a.log_probs().argmax(1) == a.labels
    rb = b.log_probs().argmax(1) == b.labels
    dom = browse(tmp_path / "cmp" / "report.html", tmp_path, "--dump-dom")
    for key, n in (("both", ra & rb), ("a", ra & ~rb), ("b", ~ra & rb), ("none", ~ra & ~rb)):
        assert f'data-cmp="{key}" data-count="{int(n.sum())}"' in dom
    assert len(list((tmp_path / "cmp" / "report_files").glob("*.webp"))) == int((~ra | ~rb).sum())


def test_hostile_names_stay_text(explored, tmp_path):
    """A class name or key that looks like markup is shown as text (checked in the raw page; the browser
    check runs when chromium is there)."""
    _, test_dir, _, frames = explored
    from vidnet.eval.explorer import write_explorer

    p = Predictions.load(test_dir / "video_logits.npz")
    p.class_names[0] = "</script><img src=x onerror=alert(1)>"
    out = tmp_path / "t"
    out.mkdir()
    p.save(out / "video_logits.npz")
    (out / "summary.json").write_text((test_dir / "summary.json").read_text())
    res = write_explorer(out, out, dataset=frames)
    text = res.page.read_text()
    assert "</script><img" not in text and "<img src=x" not in text
    if CHROMIUM:
        dom = browse(res.page, tmp_path, "--dump-dom")
        assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in dom and "<img src=\"x\"" not in dom


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "RUN", "--html", "--test", "NOWHERE"], "no summary.json"),
        (["report", "RUN", "--html", "--protocol", "sequence"], "no vidnet test output with sequence predictions"),
        (["report", "RUN", "--compare", "X"], "--compare goes with --html"),
        (["report", "RUN", "--html", "--compare", "NOWHERE"], "no such predictions file, test folder or run folder"),
    ],
)
def test_report_html_errors_are_one_line(explored, args, message, tmp_path):
    run = explored[0]
    args = [str(run) if a == "RUN" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (1, 2) and message in r.output and "Traceback" not in r.output, r.output


def test_compare_takes_a_run_a_test_folder_a_fuse_output_or_a_file(explored, tmp_path):
    from vidnet.eval.explorer import load_comparison

    run, test_dir, _, _ = explored
    r = CliRunner().invoke(app, ["fuse", str(test_dir / "video_logits.npz"), str(test_dir / "clip_logits.npz"),
                                 "--out", str(tmp_path / "fused")])
    assert r.exit_code == 0, r.output
    video = Predictions.load(test_dir / "video_logits.npz")
    for source, model in ((run, video.model), (test_dir, video.model), (test_dir / "clip_logits.npz", "1 views"),
                          (tmp_path / "fused", "fused (mean)")):
        p = load_comparison(source)
        assert model in p.model and p.keys == video.keys, source


#: ``VIDNET_UPDATE_DOCS=1``: the quickstart page's test runs the full quickstart and writes its screenshot to the
#: README's picture, ``docs/report.png``. Without it no test writes into the repository.
UPDATE_DOCS = os.environ.get("VIDNET_UPDATE_DOCS") == "1"
DOCS = Path(__file__).resolve().parents[2] / "docs"
SHOT_WIDTH, SHOT_MAX_HEIGHT, SHOT_MAX_BYTES = 1000, 4000, 400_000

# Appended to a copy of the page: the height of the laid-out page, to crop the screenshot to it.
MEASURE = """<script>
addEventListener("load", () => setTimeout(() => {
  const out = document.createElement("pre");
  out.id = "height";
  out.textContent = document.documentElement.scrollHeight;
  document.body.append(out);
}, 200));
</script>
"""


def _vidnet(*args: str) -> str:
    """``vidnet ARGS`` typed in the working folder; what it printed."""
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, f"vidnet {' '.join(args)}: exit {r.exit_code}\n{r.output[-3000:]}"
    return r.output


def _quickstart() -> tuple[Path, int]:
    """A `vidnet quickstart` folder, made in the working folder (``videos/``, ``frames/``, ``runs/frames/tiny_3d``
    and ``tiny_2d``), and the epochs its models trained.

    With VIDNET_UPDATE_DOCS=1, `vidnet quickstart` itself (16 epochs of each model, minutes on 2 cores). Without,
    its steps at the scale of CI: the sample's 8 classes with 4 shorter videos each, converted, and one epoch of
    the quickstart's own training (`quickstart_training`: the same networks, clips, schedule and seed).
    """
    from vidnet.cli.data import quickstart

    params = inspect.signature(quickstart).parameters
    folder = Path(params["workdir"].default)
    if UPDATE_DOCS:
        _vidnet("quickstart")
        return folder, params["epochs"].default
    from vidnet.cli.train import quickstart_training
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    make_sample_dataset(folder / "videos", SampleOptions(videos_per_class=4, min_frames=32, max_frames=40, workers=1))
    assert convert_dataset(folder / "videos", folder / "frames", ConvertOptions(workers=1)).failed == 0
    quickstart_training(folder / "frames", folder / "runs", epochs=1, workers=0)
    return folder, 1


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not UPDATE_DOCS, reason="chromium is not installed (apt-get install "
                    "chromium; .ci/run installs it)")
def test_quickstart_page_screenshot(tmp_path, monkeypatch):
    """The README's picture: the quickstart's folder (see `_quickstart`), the README's `vidnet test` and
    `vidnet report --html` commands typed inside it, and the page in a browser: its DOM holds the counts the
    commands printed, and its screenshot is a real picture. With VIDNET_UPDATE_DOCS=1 (and only then) the
    screenshot of the full quickstart's page becomes docs/report.png.
    """
    assert CHROMIUM, "VIDNET_UPDATE_DOCS=1: the picture needs chromium (apt-get install chromium)"
    monkeypatch.chdir(tmp_path)
    qs, epochs = _quickstart()
    monkeypatch.chdir(qs)  # the README's commands run inside the quickstart's folder
    checkpoint = f"checkpoints/ep-{epochs:04d}.pth"
    out_3d = _vidnet("test", "-c", f"runs/frames/tiny_3d/{checkpoint}", "-d", "frames", "--whole-video")
    out_2d = _vidnet("test", "-c", f"runs/frames/tiny_2d/{checkpoint}", "-d", "frames")
    wrote = _vidnet("report", "runs/frames/tiny_3d", "--html", "--compare", "runs/frames/tiny_2d")
    line = re.search(r"wrote runs/frames/tiny_3d/report\.html \([\d.]+ MB, (\d+) thumbnails [\d.]+ MB, [\d.]+ s\)",
                     wrote)
    assert line, wrote
    page = Path("runs/frames/tiny_3d/report.html").resolve()

    # The DOM, as the page's script built it: the counts `vidnet test` printed for each model.
    n, wrong = _expected_wrong(out_3d, "10 clips x 3 crops")
    wrong_2d = _expected_wrong(out_2d, "10 clips x 3 crops")[1]
    measure = page.with_name("measure.html")  # beside the page, so that its thumbnails load
    measure.write_text(page.read_text().replace("</body>", MEASURE + "</body>", 1))
    dom = browse(measure, tmp_path, "--dump-dom", f"--window-size={SHOT_WIDTH},800")
    measure.unlink()
    assert 'id="n-classes" data-count="8"' in dom and f'id="n-clips" data-count="{n}"' in dom
    assert n == (80 if UPDATE_DOCS else 8)
    assert f'id="n-wrong" data-count="{wrong}"' in dom
    assert dom.count('class="clip"') == min(wrong, 60)  # one card per mispredicted clip, pages of 60
    cmp = {k: int(v) for k, v in re.findall(r'data-cmp="(\w+)" data-count="(\d+)"', dom)}
    assert cmp["both"] + cmp["a"] == n - wrong and cmp["both"] + cmp["b"] == n - wrong_2d, cmp
    assert int(line.group(1)) == n - cmp["both"]  # a thumbnail for each clip either model gets wrong

    # The screenshot: the whole page at 1000 pixels wide, a real picture. Thumbnails stay on their first frame
    # (Blink's image animation policy "none"): a playing one is caught at a different frame each time.
    height = min(int(re.search(r'<pre id="height">(\d+)</pre>', dom).group(1)), SHOT_MAX_HEIGHT)
    shot = tmp_path / "report.png"
    browse(page, tmp_path, f"--screenshot={shot}", f"--window-size={SHOT_WIDTH},{height}",
           "--blink-settings=imageAnimationPolicy=2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(shot))
    assert img is not None and img.shape == (height, SHOT_WIDTH, 3) and height > 1000
    # Not blank: the header bar dark, the page light, and the heatmap, curves and thumbnails add colour.
    assert img[:30].mean() < 90 and np.median(img) > 200
    assert img.std() > 30 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500

    if UPDATE_DOCS:
        assert shot.stat().st_size < SHOT_MAX_BYTES, f"{shot.stat().st_size} bytes: too large for the repository"
        tmp = DOCS / ".report.png.tmp"
        shutil.copyfile(shot, tmp)
        os.replace(tmp, DOCS / "report.png")
        print(out_3d, out_2d, wrote, sep="\n")  # what the README quotes (pytest -rP shows it)
        # The README and docs/eval.md quote the command's line: sizes and counts as printed today.
        for doc in (DOCS.parent / "README.md", DOCS / "eval.md"):
            quoted = re.findall(r"wrote runs/frames/tiny_3d/report\.html \(.*\)", doc.read_text())
            same = [q for q in quoted if re.sub(r"[\d.]+ s\)$", "", q) == re.sub(r"[\d.]+ s\)$", "", line.group(0))]
            assert quoted and same == quoted, f"{doc}: quote the line printed today: {line.group(0)}"
