import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidnet.data.index import read_index, read_labels
from vidnet.data.ingest import ConvertOptions, convert_dataset
from vidnet.data.store import FrameStore
from vidnet.data.video import iter_video_frames
from vidnet.errors import UsageError
from vidnet.testing import moving_frames, write_test_video

from .test_store import _d2d_store


def _problems(dst):
    with open(dst / "convert-errors.csv", newline="") as f:
        return {Path(r["path"]).name: (r["severity"], r["reason"]) for r in csv.DictReader(f)}


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_round_trip_psnr_against_decoder(tmp_path):
    src = tmp_path / "src"
    write_test_video(src / "walk" / "a.mp4", 20, height=96, width=128)
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (1, 0)
    decoded = np.stack([f.to_ndarray(format="rgb24") for f in av.open(str(src / "walk" / "a.mp4")).decode(video=0)])
    with FrameStore(tmp_path / "dst" / "walk" / "a") as store:
        stored = store.get_frames(range(len(store)))
        assert store.meta.source_checksum.startswith("sha256:") and store.meta.jpeg_quality == 90
    assert stored.shape == decoded.shape == (20, 96, 128, 3)
    psnr = min(_psnr(x, y) for x, y in zip(stored, decoded, strict=True))
    assert psnr > 35, psnr


def _write_coded(path, frames, codec, pix_fmt, colorspace=None):
    """A video of ``frames`` in a given codec, pixel format and colour-space tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=25)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if colorspace:
            st.codec_context.colorspace = colorspace
        for x in frames:
            f = av.VideoFrame.from_ndarray(x, format="rgb24")
            if colorspace:
                f = f.reformat(format=pix_fmt, dst_colorspace=colorspace)
                f.colorspace = colorspace
            for packet in st.encode(f):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)


def _decoder_frames(path):
    from vidnet.data.video import frame_to_rgb, iter_decoded_frames

    return [(f, frame_to_rgb(f)) for f in iter_decoded_frames(path)]


def test_convert_encodes_420_planes_without_an_rgb_frame(tmp_path, monkeypatch):
    # The YUV path: a 4:2:0 source never becomes an RGB frame on its way to the store, and the store holds
    # the decoder's frames to > 35 dB at quality 90.
    from vidnet.data import ingest, video

    src = tmp_path / "src"
    write_test_video(src / "walk" / "a.mp4", 16, height=96, width=128)
    reference = list(iter_video_frames(src / "walk" / "a.mp4"))

    def no_rgb(frame):
        raise AssertionError("a 4:2:0 frame was converted to RGB")

    monkeypatch.setattr(video, "frame_to_rgb", no_rgb)
    monkeypatch.setattr(ingest, "frame_to_rgb", no_rgb, raising=False)
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (1, 0), s.problems
    with FrameStore(tmp_path / "dst" / "walk" / "a") as store:
        stored = store.get_frames(range(len(store)))
    assert min(_psnr(x, y) for x, y in zip(stored, reference, strict=True)) > 35


@pytest.mark.parametrize("short_side", [None, 44, 45, 120])
def test_yuv_path_matches_the_rgb_path(tmp_path, short_side):
    # Same size and the RGB path's quality at every JPEG quality (odd sizes and enlarging included).
    from vidnet.data.ingest import encode_video_frame, resize_frame, target_size
    from vidnet.data.store import decode_jpeg, encode_jpeg

    write_test_video(tmp_path / "a.mp4", 6, height=48, width=64)
    for frame, rgb in _decoder_frames(tmp_path / "a.mp4"):
        size = target_size(64, 48, short_side)
        ref = resize_frame(rgb, size)
        for q in (75, 85, 90, 95):
            yuv, via_rgb = decode_jpeg(encode_video_frame(frame, size, q)), decode_jpeg(encode_jpeg(ref, q))
            assert yuv.shape == (size[1], size[0], 3)
            # At most 0.5 dB below the RGB path, or above 40 dB (where the two resamplings of the chroma,
            # before and after the colour conversion, differ by more than JPEG's loss).
            assert _psnr(yuv, ref) > min(_psnr(via_rgb, ref) - 0.5, 40), (q, size)
        assert _psnr(decode_jpeg(encode_video_frame(frame, size, 90)), ref) > 35


@pytest.mark.parametrize("short_side", [None, 32, 45])
def test_a_frame_encodes_to_the_same_bytes_every_time(tmp_path, short_side):
    # 64x48 -> 43x32 at short side 32: libjpeg-turbo's encoder from planes read past an odd-width plane,
    # so the same frame gave different bytes from one call to the next (and one conversion to the next).
    from vidnet.data.ingest import encode_video_frame, target_size

    write_test_video(tmp_path / "a.mp4", 3, height=48, width=64)
    size = target_size(64, 48, short_side)
    for frame, _ in _decoder_frames(tmp_path / "a.mp4"):
        encoded = set()
        for _ in range(12):
            _scratch = [bytes(np.random.default_rng().integers(0, 255, 4096, dtype=np.uint8)) for _ in range(32)]
            encoded.add(encode_video_frame(frame, size, 90))
        assert len(encoded) == 1, size


@pytest.mark.parametrize("kind", ["full-range 4:2:0 (MJPEG)", "4:4:4", "BT.709"])
def test_other_sources_keep_the_decoders_colours(tmp_path, kind):
    # yuvj420p is full range: its planes go to the encoder unstretched; 4:4:4 and BT.709 take the RGB path.
    from vidnet.data.ingest import encode_video_frame
    from vidnet.data.store import decode_jpeg
    from vidnet.data.video import frame_to_yuv420

    codec, pix, cs, ext = {"full-range 4:2:0 (MJPEG)": ("mjpeg", "yuvj420p", None, "avi"),
                           "4:4:4": ("libx264", "yuv444p", None, "mp4"),
                           "BT.709": ("libx264", "yuv420p", 1, "mp4")}[kind]
    _write_coded(tmp_path / f"a.{ext}", moving_frames(4, 48, 64), codec, pix, cs)
    for frame, rgb in _decoder_frames(tmp_path / f"a.{ext}"):
        planes = frame_to_yuv420(frame)
        assert (planes is not None) == (kind.startswith("full")) and (planes is None or planes.full_range)
        assert _psnr(decode_jpeg(encode_video_frame(frame, (64, 48), 90)), rgb) > 35, kind


def test_dispatch_largest_first_and_decoder_threads_for_the_last_videos(tmp_path):
    from vidnet.data.ingest import Job, _dispatch

    jobs = []
    for i, size in enumerate([10, 50, 30, 40, 20]):
        (tmp_path / f"v{i}.mp4").write_bytes(b"x" * size)
        jobs.append(Job("a", f"v{i}", tmp_path / f"v{i}.mp4", "videos"))
    got = [(j.video_id, t) for j, t in _dispatch(jobs, 4)]
    # 5 jobs on 4 cores: when the 3rd-largest starts, 3 remain (1 thread); the 4th: 2 remain (2); the last: 4.
    assert got == [("v1", 1), ("v3", 1), ("v2", 1), ("v4", 2), ("v0", 4)]
    assert [(j.video_id, t) for j, t in _dispatch(jobs, 1)] == [(f"v{i}", 1) for i in range(5)]  # order kept


def test_a_single_video_is_decoded_with_every_worker_as_threads(tmp_path, monkeypatch):
    from vidnet.data import ingest

    write_test_video(tmp_path / "src" / "walk" / "a.mp4", 8)
    seen = []
    real = ingest.iter_decoded_frames

    def spy(path, **kw):
        seen.append(kw["threads"])
        return real(path, **kw)

    monkeypatch.setattr(ingest, "iter_decoded_frames", spy)
    s = convert_dataset(tmp_path / "src", tmp_path / "dst", ConvertOptions(workers=2))
    assert (s.converted, seen) == (1, [2])


def _bad_dataset(root):
    walk, run = root / "walk", root / "run"
    write_test_video(walk / "good1.mp4", 12)
    write_test_video(walk / "good2.avi", 10, codec="mpeg4")
    write_test_video(walk / "single.mp4", 1)
    data = (walk / "good1.mp4").read_bytes()
    write_test_video(root / "tmp" / "long_fs.mp4", 100, faststart=True)
    fs = (root / "tmp" / "long_fs.mp4").read_bytes()
    (walk / "partial.mp4").write_bytes(fs[: len(fs) * 2 // 3])  # header says 100 frames, ~60 decode
    (walk / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index at the end: nothing readable
    (walk / "empty.mp4").write_bytes(b"")
    (walk / "notes.mp4").write_text("this is not a video\n")
    with av.open(str(walk / "audio.mkv"), "w") as out:  # a container with no video stream
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    write_test_video(walk / "dup.mp4", 8)
    write_test_video(walk / "dup.mkv", 8)
    write_test_video(run / "good3.webm", 9, codec="libvpx")
    for p in (root / "tmp").iterdir():
        p.unlink()
    (root / "tmp").rmdir()


def test_bad_inputs_never_stop_the_batch(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _bad_dataset(src)
    s = convert_dataset(src, dst, ConvertOptions(workers=2))
    assert s.converted == 6  # good1, good2, single, partial, dup (first), good3
    assert s.failed == 5  # truncated, empty, notes, audio, the duplicate
    probs = _problems(dst)
    assert probs["empty.mp4"] == ("error", "empty file (0 bytes)")
    assert probs["notes.mp4"][0] == "error" and "not a readable video" in probs["notes.mp4"][1]
    assert probs["truncated.mp4"][0] == "error"
    assert probs["audio.mkv"] == ("error", "the container has no video stream")
    # Natural order puts dup.mkv first; the second file with the same id is the error.
    assert probs["dup.mp4"][0] == "error" and "duplicate video id 'dup'" in probs["dup.mp4"][1]
    assert probs["single.mp4"] == ("warning", "single frame: every clip of this video repeats it")
    assert probs["partial.mp4"][0] == "warning"
    meta = FrameStore(dst / "walk" / "partial").meta
    notes = " ".join(meta.notes)
    assert "partial: decoding stopped after" in notes and "header says 100 frames" in notes
    assert 30 < meta.n_frames < 100
    rows = {r.id: r for r in read_index(dst / "index.csv")}
    assert set(rows) == {"good1", "good2", "single", "partial", "dup", "good3"}
    assert rows["good2"].n_frames == 10 and rows["good2"].path == "walk/good2"
    assert read_labels(dst / "labels.json") == {"run": 0, "walk": 1}
    for row in rows.values():
        with FrameStore(dst / row.path) as store:
            assert len(store) == row.n_frames and not store.verify()


def test_cli_exit_codes(tmp_path):
    from typer.testing import CliRunner

    from vidnet.cli import app

    src, dst = tmp_path / "src", tmp_path / "dst"
    _bad_dataset(src)
    runner = CliRunner()
    ok = runner.invoke(app, ["convert", str(src), str(dst), "--workers", "1", "-q"])
    assert ok.exit_code == 0, ok.output
    strict = runner.invoke(app, ["convert", str(src), str(dst), "--workers", "1", "--strict", "-q"])
    assert strict.exit_code == 1 and "--strict was given" in strict.output
    only_bad = tmp_path / "bad"
    (only_bad / "x").mkdir(parents=True)
    (only_bad / "x" / "a.mp4").write_bytes(b"")
    res = runner.invoke(app, ["convert", str(only_bad), str(tmp_path / "out"), "-q"])
    assert res.exit_code == 1 and "nothing converted" in res.output
    res = runner.invoke(app, ["convert", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert res.exit_code == 2 and f"error: {tmp_path / 'nope'}: no such folder" in res.output
    res = runner.invoke(app, ["info", str(dst), "--json", "--verify"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert (info["videos"], info["classes"], info["failures"]) == (6, 2, 5)
    res = runner.invoke(app, ["info", str(dst / "walk" / "good1" / "frames.db"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_frames"] == 12


def test_cli_one_line_error_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vidnet", "convert", str(tmp_path / "nope"), str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"


def test_resume_skips_finished_and_redoes_changed(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_test_video(src / "a" / "v1.mp4", 10)
    write_test_video(src / "a" / "v2.mp4", 10)
    assert convert_dataset(src, dst, ConvertOptions(workers=1)).converted == 2
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.skipped) == (0, 2)
    write_test_video(src / "a" / "v2.mp4", 14, seed=5)  # the source changed
    s = convert_dataset(src, dst, ConvertOptions(workers=1))
    assert (s.converted, s.skipped) == (1, 1)
    assert len(FrameStore(dst / "a" / "v2")) == 14
    s = convert_dataset(src, dst, ConvertOptions(workers=1, overwrite=True))
    assert s.converted == 2


def test_frame_folders_keep_jpeg_bytes(tmp_path):
    src = tmp_path / "jpegs_256"
    frames = moving_frames(6)
    folder = src / "Walk" / "v_Walk_g01_c01"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        # Numbers without zero padding: frame_10 must come after frame_9.
        (folder / f"frame{i + 1}.jpg").write_bytes(buf.tobytes())
    (folder / "frame7.jpg").write_bytes(b"\xff\xd8 broken")
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    assert s.converted == 1
    with FrameStore(tmp_path / "dst" / "Walk" / "v_Walk_g01_c01") as store:
        assert len(store) == 6 and store.meta.jpeg_quality == 0
        assert store.get_bytes([0, 5]) == [(folder / "frame1.jpg").read_bytes(), (folder / "frame6.jpg").read_bytes()]
    assert "frame7.jpg: not a valid JPEG" in _problems(tmp_path / "dst")["v_Walk_g01_c01"][1]
    # A resize re-encodes.
    s = convert_dataset(src, tmp_path / "small", ConvertOptions(workers=1, short_side=24))
    with FrameStore(tmp_path / "small" / "Walk" / "v_Walk_g01_c01") as store:
        assert (store.meta.height, store.meta.width) == (24, 32)


def test_hdf5_layout(tmp_path):
    import h5py

    frames = moving_frames(7)
    (tmp_path / "src" / "jump").mkdir(parents=True)
    with h5py.File(tmp_path / "src" / "jump" / "clip1.h5", "w") as f:
        f.create_dataset("video", data=frames)
    with h5py.File(tmp_path / "src" / "jump" / "wrong.h5", "w") as f:
        f.create_dataset("frames", data=frames)
    s = convert_dataset(tmp_path / "src", tmp_path / "dst", ConvertOptions(workers=1, quality=95))
    assert (s.converted, s.failed) == (1, 1)
    with FrameStore(tmp_path / "dst" / "jump" / "clip1") as store:
        assert _psnr(store.get_frames([3])[0], frames[3]) > 35
    assert "no 'video' dataset" in _problems(tmp_path / "dst")["wrong.h5"][1]


def test_dataset2database_tree_repack_and_in_place(tmp_path):
    src = tmp_path / "d2d" / "jpg"
    frames = moving_frames(8)
    _d2d_store(src / "Run" / "v_Run_g01", frames, "v_Run_g01")
    _d2d_store(src / "Sit" / "v_Sit_g02", frames[:5], "v_Sit_g02")
    s = convert_dataset(tmp_path / "d2d", tmp_path / "dst", ConvertOptions(workers=1))
    assert s.converted == 2
    with FrameStore(tmp_path / "dst" / "Run" / "v_Run_g01") as new, FrameStore(src / "Run" / "v_Run_g01") as old:
        assert new.is_vidnet and new.get_bytes(range(8)) == old.get_bytes(range(8))
    s = convert_dataset(tmp_path / "d2d", None, ConvertOptions(workers=1, in_place=True))
    assert s.converted == 2
    assert (src / "Sit" / "v_Sit_g02" / "n_frames").read_text().strip() == "5"
    rows = {r.id: r for r in read_index(tmp_path / "d2d" / "index.csv")}
    assert rows["v_Run_g01"].n_frames == 8 and rows["v_Run_g01"].path == "jpg/Run/v_Run_g01"
    with pytest.raises(UsageError):
        convert_dataset(tmp_path / "d2d", tmp_path / "d2d", ConvertOptions(workers=1))


def test_index_gives_labels_splits_and_fps(tmp_path):
    src = tmp_path / "src"
    write_test_video(src / "raw" / "x1.mp4", 50, fps=25)
    write_test_video(src / "raw" / "x2.mp4", 20)
    (src / "index.csv").write_text(
        "label,id,time_start,time_end,split,source\n"
        "swing,x1,,,train,raw/x1.mp4\n"
        "dive,x2,,,val,raw/x2\n"  # no extension: found by its stem
        "dive,x3,,,val,raw/x3.mp4\n"  # missing
    )
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1, fps=12.5))
    assert (s.converted, s.failed) == (2, 1)
    rows = {r.id: r for r in read_index(tmp_path / "dst" / "index.csv")}
    assert (rows["x1"].label, rows["x1"].split, rows["x2"].split) == ("swing", "train", "val")
    assert rows["x1"].n_frames == 25 and rows["x2"].n_frames == 10  # 25 fps -> 12.5 fps
    assert FrameStore(tmp_path / "dst" / "swing" / "x1").meta.fps == 12.5
    assert _problems(tmp_path / "dst")["x3.mp4"] == ("error", "listed in the index but not found")
    assert read_labels(tmp_path / "dst" / "labels.json") == {"dive": 0, "swing": 1}  # missing video keeps its id


def test_fps_resampling_picks_latest_frame(tmp_path):
    frames = write_test_video(tmp_path / "v.mp4", 10, fps=10)
    assert len(list(iter_video_frames(tmp_path / "v.mp4", fps=20))) == 19  # each frame twice but the last
    got = list(iter_video_frames(tmp_path / "v.mp4", fps=5))
    assert len(got) == 5
    full = list(iter_video_frames(tmp_path / "v.mp4"))
    for k, frame in enumerate(got):
        np.testing.assert_array_equal(frame, full[2 * k])
    assert full[0].shape == frames[0].shape


def test_val_fraction_is_stable(tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        write_test_video(src / "c" / f"v{i:02d}.mp4", 2)
    s1 = convert_dataset(src, tmp_path / "d1", ConvertOptions(workers=2, val_fraction=0.3))
    s2 = convert_dataset(src, tmp_path / "d2", ConvertOptions(workers=1, val_fraction=0.3))
    split1 = {r.id: r.split for r in s1.rows}
    assert split1 == {r.id: r.split for r in s2.rows}
    assert set(split1.values()) == {"train", "val"}


@pytest.mark.slow
def test_killed_conversion_resumes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(10):
        write_test_video(src / f"c{i % 2}" / f"v{i}.mp4", 90, height=240, width=320, seed=i)
    cmd = [sys.executable, "-m", "vidnet", "convert", str(src), str(dst), "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        done = list(dst.rglob("frames.db")) if dst.exists() else []
        partial = list(dst.rglob(".frames.db.*.tmp")) if dst.exists() else []
        if done and partial:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list(dst.rglob("frames.db"))
    assert 0 < len(done) < 10, "the kill should land mid-run"
    assert not (dst / "index.csv").exists()
    for path in done:  # whatever exists under the final name is complete
        with FrameStore(path) as store:
            assert len(store) == 90 and not store.verify()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "already done" in res.stderr
    assert not list(dst.rglob(".frames.db.*.tmp"))
    rows = read_index(dst / "index.csv")
    assert len(rows) == 10
    for row in rows:
        with FrameStore(dst / row.path) as store:
            assert len(store) == 90 and not store.verify()


def test_ctrl_c_leaves_no_partial_store(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(6):
        write_test_video(src / "c" / f"v{i}.mp4", 90, height=240, width=320, seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "vidnet", "convert", str(src), str(dst), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (dst.exists() and list(dst.rglob(".frames.db.*.tmp"))):
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("conversion finished before the interrupt landed")
    assert proc.returncode == 130 and "interrupted" in err
    assert not list(dst.rglob(".frames.db.*.tmp"))


def test_index_cut_slices_the_source_and_empty_source_is_missing(tmp_path):
    src = tmp_path / "src"
    write_test_video(src / "full" / "yt1.mp4", 50, fps=25)
    (src / "index.csv").write_text(
        "label,id,time_start,time_end,split,source,cut\n"
        "jump,yt1,0.4,1.2,train,full/yt1.mp4,1\n"  # HACS-style: the clip is [0.4, 1.2) s of the full video
        "jump,yt1,1.2,2,train,full/yt1.mp4,1\n"
        "jump,gone,,,train,,\n"  # `vidnet prepare` found no file
    )
    s = convert_dataset(src, tmp_path / "dst", ConvertOptions(workers=1))
    assert (s.converted, s.failed) == (2, 1)
    rows = sorted(read_index(tmp_path / "dst" / "index.csv"), key=lambda r: r.time_start)
    assert [(r.path, r.n_frames) for r in rows] == [("jump/yt1_000000_000001", 20), ("jump/yt1_000001_000002", 20)]
    full = list(iter_video_frames(src / "full" / "yt1.mp4"))
    with FrameStore(tmp_path / "dst" / "jump" / "yt1_000000_000001") as store:
        assert _psnr(store.get_frames([0])[0], full[10]) > 35  # frame 10 is shown at 0.4 s
    assert _problems(tmp_path / "dst")["gone"] == ("error", "missing: the index names no source file")
