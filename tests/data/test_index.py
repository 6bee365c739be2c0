from vidnet.data.index import IndexRow, label_map, read_index, read_labels, write_index, write_labels


def test_index_round_trip_and_original_columns(tmp_path):
    rows = [
        IndexRow("b", "v2", split="val", n_frames=10, path="b/v2"),
        IndexRow("a", "yt1", 12.0, 22.0, "train", 40, "a/yt1_000012_000022", {"note": "x"}),
    ]
    write_index(tmp_path / "index.csv", rows)
    text = (tmp_path / "index.csv").read_text()
    assert text.splitlines()[0] == "label,id,time_start,time_end,split,n_frames,path,note"
    back = read_index(tmp_path / "index.csv")
    assert [r.id for r in back] == ["yt1", "v2"]  # sorted by label
    assert back[0].dir_name == "yt1_000012_000022" and back[0].extra == {"note": "x"}
    assert back[1].time_start is None and back[1].n_frames == 10

    # The original SRTG CSV: youtube_id wins over id, no n_frames/path columns.
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nabseil,abc,5,15,train\n")
    (row,) = read_index(tmp_path / "k.csv")
    assert (row.id, row.dir_name, row.n_frames) == ("abc", "abc_000005_000015", 0)


def test_label_ids_are_sorted_and_deterministic(tmp_path):
    m = label_map(["walk", "run", "jump", "run"])
    assert m == {"jump": 0, "run": 1, "walk": 2}
    write_labels(tmp_path / "labels.json", m)
    assert read_labels(tmp_path / "labels.json") == m
