import random
import sqlite3

import cv2
import numpy as np
import pytest

from vidnet.data.store import FrameStore, StoreMeta, StoreWriter, decode_jpeg, encode_jpeg, is_complete_store
from vidnet.errors import CorruptFrameError, StoreError


def _frames(n=12, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (6, 8, 3), np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    # Each frame carries its index as a bright bar so order mistakes are visible after JPEG.
    out = []
    for i in range(n):
        f = base.copy()
        f[:, :4] = 0
        f[i * 3 % h : i * 3 % h + 3, :4] = 255
        f[0, 0] = i
        out.append(f)
    return np.stack(out)


def _vidnet_store(tmp_path, frames, name="vid"):
    with StoreWriter(tmp_path / name) as w:
        for f in frames:
            w.add_rgb(f, 95)
        w.commit(StoreMeta(fps=25.0, source_name="x.mp4"))
    return tmp_path / name


def _d2d_store(folder, frames, video_id, *, shuffle=True):
    """A store exactly as dataset2database writes it: no index, no meta, rows in any order, cv2 JPEGs."""
    folder.mkdir(parents=True)
    con = sqlite3.connect(folder / "frames.db")
    con.execute("CREATE TABLE Images(ObjId STRING, frames BLOB, size INT)")
    rows = [(f"{video_id}/frame_{i + 1:05d}", cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes(),
             f.shape[1]) for i, f in enumerate(frames)]
    if shuffle:
        random.Random(3).shuffle(rows)
    con.executemany("INSERT INTO Images VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()


def _index_of(frame):  # the bar position encodes the frame index (mod 16)
    col = frame[:, 1, :].astype(int).sum(axis=1)
    return int(np.argmax(col)) // 3


def test_order_and_duplicates_in_one_query(tmp_path):
    frames = _frames()
    folder = _vidnet_store(tmp_path, frames)
    assert (folder / "n_frames").read_text().strip() == "12"
    with FrameStore(folder) as store:
        assert store.is_vidnet and len(store) == 12
        assert (store.meta.width, store.meta.height, store.meta.fps) == (64, 48, 25.0)
        statements = []
        store._con.set_trace_callback(statements.append)
        want = [3, 1, 3, 11, 0, 3]
        clip = store.get_frames(want)
        assert len(statements) == 1 and statements[0].startswith("SELECT")
        assert clip.shape == (6, 48, 64, 3) and clip.dtype == np.uint8
        assert [_index_of(f) for f in clip] == want
        np.testing.assert_array_equal(clip[0], clip[2])
        blobs = store.get_bytes(want)
        assert blobs[0] == blobs[2] and blobs[0] != blobs[1]
        with pytest.raises(IndexError):
            store.get_bytes([12])


def test_rgb_channel_order(tmp_path):
    red = np.zeros((3, 32, 32, 3), np.uint8)
    red[..., 0] = 250
    with FrameStore(_vidnet_store(tmp_path, red)) as store:
        px = store.get_frames([0])[0, 16, 16]
    assert px[0] > 200 and px[1] < 30 and px[2] < 30  # RGB, not OpenCV's BGR


def test_reads_dataset2database_store(tmp_path):
    frames = _frames(n=9)
    _d2d_store(tmp_path / "v_Foo_g01_c01", frames, "v_Foo_g01_c01")
    with FrameStore(tmp_path / "v_Foo_g01_c01") as store:
        assert not store.is_vidnet and len(store) == 9 and store.meta.width == 64
        clip = store.get_frames([8, 0, 4, 4])
        assert [_index_of(f) for f in clip] == [8, 0, 4, 4]
    assert is_complete_store(tmp_path / "v_Foo_g01_c01") is None  # foreign: not a finished vidnet store


def test_original_query_on_vidnet_store(tmp_path):
    frames = _frames()
    folder = _vidnet_store(tmp_path, frames, name="myvid")
    con = sqlite3.connect(folder / "frames.db")
    ids = ["myvid/frame_00002", "myvid/frame_00010", "myvid/frame_00001"]
    rows = con.execute(f"SELECT ObjId, frames FROM Images WHERE ObjId IN ({','.join('?' * 3)})", ids).fetchall()
    got = {obj: decode_jpeg(blob) for obj, blob in rows}
    assert set(got) == set(ids)
    assert _index_of(got["myvid/frame_00010"]) == 9 and _index_of(got["myvid/frame_00001"]) == 0
    sizes = {s for (s,) in con.execute("SELECT size FROM Images")}
    assert sizes == {64}  # size = frame width, as the original writes it


def test_writer_is_atomic(tmp_path):
    folder = tmp_path / "v"
    with pytest.raises(RuntimeError):
        with StoreWriter(folder) as w:
            w.add_rgb(_frames(2)[0], 90)
            raise RuntimeError("interrupted")
    assert not folder.exists()  # no store, no temporary, no n_frames, no empty folder
    with StoreWriter(folder) as w:
        w.add_rgb(_frames(2)[0], 90)
        with pytest.raises(StoreError, match="earlier ones"):
            w.add_rgb(np.zeros((10, 10, 3), np.uint8), 90)


def test_corrupt_blob_names_store_and_frame(tmp_path):
    folder = _vidnet_store(tmp_path, _frames(4))
    # Corrupt frame 2 in a copy opened for writing.
    con = sqlite3.connect(folder / "frames.db")
    con.execute("UPDATE Images SET frames = ? WHERE rowid = 3", (b"\xff\xd8garbage",))
    con.commit()
    con.close()
    with FrameStore(folder, immutable=False) as store:
        with pytest.raises(CorruptFrameError, match=r"frames\.db: frame 2 does not decode"):
            store.get_frames([0, 2])
        assert len(store.verify()) == 1
    with pytest.raises(StoreError, match="no such store"):
        FrameStore(tmp_path / "missing")
    (tmp_path / "text" ).mkdir()
    (tmp_path / "text" / "frames.db").write_text("not a database")
    with pytest.raises(StoreError, match="not a readable SQLite store"):
        FrameStore(tmp_path / "text")


def test_reduced_scale_decode():
    frame = _frames(1, h=96, w=128)[0]
    small = decode_jpeg(encode_jpeg(frame), min_height=40, min_width=60)
    assert small.shape == (48, 64, 3)


def test_clip_reader_one_statement_and_foreign_fallback(tmp_path):
    from vidnet.data.store import ClipReader, jpeg_size

    frames = _frames()
    folder = _vidnet_store(tmp_path, frames)
    reader = ClipReader(folder / "frames.db")
    statements: list[str] = []
    reader._con.set_trace_callback(statements.append)
    idx = [3, 0, 3, 11]
    with FrameStore(folder) as store:
        assert reader.get_bytes(idx) == store.get_bytes(idx)
        assert np.array_equal(reader.get_frames(idx, min_size=(6, 8)), store.get_frames(idx, min_size=(6, 8)))
    # One SELECT per read (the first one also asks for the frame count); before it, the page cache settings.
    assert [s.split()[0].upper() for s in statements] == ["PRAGMA", "PRAGMA", "SELECT", "SELECT"]
    assert "meta" in statements[2] and "meta" not in statements[3]
    assert reader.n_frames == len(reader) == 12
    assert reader._con.execute("PRAGMA cache_size").fetchone()[0] == 0  # no private copy of the pages read
    assert jpeg_size(reader.get_bytes([0])[0]) == frames.shape[1:3]
    with pytest.raises(IndexError):
        reader.get_bytes([12])
    # A dataset2database store (no meta, shuffled rows): the first read falls back to FrameStore's mapping.
    _d2d_store(tmp_path / "d2d", frames, "v")
    foreign = ClipReader(tmp_path / "d2d" / "frames.db")
    assert [_index_of(f) for f in foreign.get_frames([5, 2, 2])] == [5, 2, 2] and len(foreign) == 12
    garbage = tmp_path / "bad.db"
    garbage.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable"):
        ClipReader(garbage).get_bytes([0])
