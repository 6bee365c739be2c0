import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from vidnet.data.index import read_index, read_labels
from vidnet.data.prepare import prepare, safe_id, safe_label, write_prepared
from vidnet.errors import UsageError, VidnetError

FIXTURES = Path(__file__).parent / "fixtures" / "prepare"


def touch(root: Path, *paths: str) -> None:
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")


def splits(prepared):
    return dict(Counter(r.split for r in prepared.rows))


def by_id(prepared):
    return {r.id: r for r in prepared.rows}


def test_safe_names():
    assert safe_id("v_ApplyEyeMakeup_g08_c01") == "v_ApplyEyeMakeup_g08_c01"
    assert safe_id("(Rad)Schlag_die_Bank!_cartwheel") == "_Rad_Schlag_die_Bank__cartwheel"
    assert safe_id(".hidden id") == "_hidden_id"
    assert safe_id("-mmq0PT-u8k_00155") == "-mmq0PT-u8k_00155"
    assert safe_label("passing American football (in game)") == "passing American football (in game)"
    assert safe_label("a/b\\c") == "a_b_c" and safe_label("..") == "_"


@pytest.mark.parametrize(
    ("number", "expected"),
    [(1, {"train": 6, "test": 4}), (2, {"train": 5, "test": 5}), (3, {"train": 9, "test": 1})],
)
def test_ucf101_splits_and_class_ids(number, expected):
    p = prepare("ucf101", FIXTURES / "ucf101", split_number=number)
    assert splits(p) == expected
    # vidnet ids are sorted names (case-sensitive): JumpRope before JumpingJack, unlike classInd's order
    assert p.labels == {"ApplyEyeMakeup": 0, "HandstandPushups": 1, "JumpRope": 2, "JumpingJack": 3}
    g15 = by_id(p)["v_JumpRope_g15_c01"]
    assert (g15.label, g15.extra["split1"], g15.extra["split2"], g15.extra["split3"]) == (
        "JumpRope", "train", "train", "test")
    hsp = by_id(p)["v_HandStandPushups_g01_c01"]
    assert hsp.label == "HandstandPushups" and hsp.extra["source"] == "HandstandPushups/v_HandStandPushups_g01_c01.avi"
    assert p.report.classes == 4 and not p.report.duplicates and not p.report.in_two_splits


def test_ucf101_videos_on_disk_case_insensitive_and_missing(tmp_path):
    videos = tmp_path / "UCF-101"
    lines = (FIXTURES / "ucf101/ucfTrainTestlist/trainlist03.txt").read_text().splitlines()
    names = [line.split()[0] for line in lines] + ["JumpRope/v_JumpRope_g15_c01.avi"]
    names.remove("JumpingJack/v_JumpingJack_g08_c01.avi")  # missing on disk
    names.remove("HandstandPushups/v_HandStandPushups_g08_c01.avi")
    touch(videos, *names, "HandstandPushups/v_HandstandPushups_g08_c01.avi")  # a renamed copy, other case
    p = prepare("ucf101", FIXTURES / "ucf101", videos=videos)
    assert p.report.missing == ["JumpingJack/v_JumpingJack_g08_c01.avi"]
    assert p.report.found == {"train": 5, "test": 4}
    rows = by_id(p)
    assert rows["v_HandStandPushups_g08_c01"].extra["source"] == "HandstandPushups/v_HandstandPushups_g08_c01.avi"
    assert rows["v_JumpingJack_g08_c01"].extra["source"] == ""
    assert rows["v_JumpRope_g15_c01"].extra["source"] == "JumpRope/v_JumpRope_g15_c01.avi"


def test_ucf101_inconsistencies_are_reported_not_fatal(tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(FIXTURES / "ucf101/ucfTrainTestlist", ann)
    with open(ann / "trainlist01.txt", "a") as f:
        f.write("JumpRope/v_JumpRope_g08_c01.avi 4\r\n")  # duplicate
    with open(ann / "testlist01.txt", "a") as f:
        f.write("Unknown/v_Unknown_g01_c01.avi\r\n")  # class not in classInd
        f.write("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r\n")  # already in train
    with open(ann / "trainlist02.txt", "a") as f:
        f.write("JumpingJack/v_JumpRope_g99_c01.avi 4\r\n")  # folder says JumpingJack, id says JumpRope
    p = prepare("ucf101", ann)
    r = p.report
    assert [u["class"] for u in r.unknown_classes] == ["Unknown"]
    assert r.unknown_classes[0]["where"].endswith("testlist01.txt:5")
    assert [d["video"] for d in r.duplicates] == ["JumpRope/v_JumpRope_g08_c01.avi"]
    assert [(d["video"], d["first"].rsplit("/", 1)[1]) for d in r.in_two_splits] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "trainlist01.txt:1")]
    assert [c["video"] for c in r.conflicting_labels] == ["JumpingJack/v_JumpRope_g99_c01.avi"]
    assert by_id(p)["v_ApplyEyeMakeup_g08_c01"].split == "train"
    assert splits(p) == {"train": 6, "test": 4, "": 1}  # g99 is only in split 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [("JumpRope/v_JumpRope_g08_c01.avi 9", "class id 9 is not in classInd.txt"),
     ("JumpRope/v_JumpRope_g08_c01.avi", "expected '<class>/<video> <class id>'")],
)
def test_ucf101_bad_line_names_file_and_line(tmp_path, line, reason):
    ann = tmp_path / "ann"
    shutil.copytree(FIXTURES / "ucf101/ucfTrainTestlist", ann)
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n" + line + "\r\n")
    with pytest.raises(VidnetError, match=rf"trainlist01\.txt:2: {reason}"):
        prepare("ucf101", ann)


def test_ucf101_missing_list_is_a_usage_error(tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(FIXTURES / "ucf101/ucfTrainTestlist", ann)
    (ann / "testlist02.txt").unlink()
    p = prepare("ucf101", ann)  # split 2 incomplete: dropped with a note
    assert all(r.extra["split2"] == "" for r in p.rows) and "split 2: only one of" in p.report.notes[0]
    with pytest.raises(UsageError, match="UCF-101 test list 2"):
        prepare("ucf101", ann, split_number=2)


@pytest.mark.parametrize("number", [1, 2, 3])
def test_hmdb51_splits_unused_and_safe_ids(number):
    p = prepare("hmdb51", FIXTURES / "hmdb51", split_number=number)
    assert splits(p) == {"train": 3, "test": 2, "unused": 1}
    assert p.labels == {"brush_hair": 0, "cartwheel": 1}
    rows = by_id(p)
    rad = rows["_Rad_Schlag_die_Bank__cartwheel_f_cm_np1_le_med_0"]
    assert (rad.extra["split1"], rad.extra["split2"], rad.extra["split3"]) == ("train", "unused", "test")
    assert rad.extra["source"] == "cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi"
    assert {"id": "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0",
            "to": "_Rad_Schlag_die_Bank__cartwheel_f_cm_np1_le_med_0"} in p.report.renamed


def test_hmdb51_bad_flag_and_id_collision(tmp_path):
    ann = tmp_path / "splits"
    ann.mkdir()
    (ann / "kiss_test_split1.txt").write_text("a!b_kiss_0.avi 1 \na?b_kiss_0.avi 2 \n")
    p = prepare("hmdb51", ann)
    assert sorted(r.id for r in p.rows) == ["a_b_kiss_0", "a_b_kiss_0_dup2"]
    (ann / "kiss_test_split1.txt").write_text("a_kiss_0.avi 1 \na_kiss_1.avi 3\n")
    with pytest.raises(VidnetError, match=r"kiss_test_split1\.txt:2: expected '<video> <0\|1\|2>'"):
        prepare("hmdb51", ann)


def test_kinetics_layouts_missing_and_unlabelled(tmp_path):
    videos = tmp_path / "k400"
    touch(videos,
          "train/---QUuC4vJs_000003_000013.mp4",
          "abseiling/--330hg-Ocw_000149_000159.mp4",
          "passing_American_football_(in_game)/-0Y-r6l5ErI_000040_000050.mp4",
          "train/passing American football (in game)/-2K1vC1wmhM_000007_000017.mkv",
          "val/0wR5jVB-WPk_000417_000427.mp4",
          "3pNvyvn-hq8_000031_000041.webm")
    p = prepare("kinetics400", FIXTURES / "kinetics400", videos=videos)
    assert splits(p) == {"train": 5, "val": 2}
    assert p.report.skipped == {"unlabelled": 2}
    assert p.labels == {"abseiling": 0, "massaging person's head": 1, "passing American football (in game)": 2}
    assert p.report.found == {"train": 4, "val": 2}
    assert p.report.missing == ["massaging person's head/-5S6HD-zx4o_000000_000010.mp4"]
    rows = by_id(p)
    assert rows["-2K1vC1wmhM"].extra["source"] == (
        "train/passing American football (in game)/-2K1vC1wmhM_000007_000017.mkv")
    assert rows["-0Y-r6l5ErI"].extra["source"] == "passing_American_football_(in_game)/-0Y-r6l5ErI_000040_000050.mp4"
    assert rows["3pNvyvn-hq8"].extra["source"] == "3pNvyvn-hq8_000031_000041.webm"
    assert (rows["--330hg-Ocw"].time_start, rows["--330hg-Ocw"].time_end) == (149, 159)
    assert rows["--330hg-Ocw"].dir_name == "--330hg-Ocw_000149_000159"
    assert rows["---QUuC4vJs"].extra["is_cc"] == "0"


def test_kinetics_validate_split_unknown_class_and_bad_header(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,0,10,train\n")
    (tmp_path / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,bbb,1,11,validate\nnew class,ccc,2,12,validate\n")
    p = prepare("kinetics700", tmp_path)
    assert splits(p) == {"train": 1, "val": 1}
    assert p.report.unknown_classes == [{"class": "new class", "where": f"{tmp_path / 'validate.csv'}:3"}]
    assert "1 classes, the official kinetics700 has 700" in p.report.notes
    (tmp_path / "validate.csv").write_text("label,youtube_id,start,end\n")
    with pytest.raises(VidnetError, match=r"validate\.csv:1: not a Kinetics CSV"):
        prepare("kinetics700", tmp_path)
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,b,x,11,val\n")
    with pytest.raises(VidnetError, match=r"validate\.csv:2: time_start is not a number"):
        prepare("kinetics700", tmp_path)


def test_jester_frames_folders_and_preset(tmp_path):
    videos = tmp_path / "jester"
    for vid in ("34870", "56557", "129112", "63861", "131717", "9223"):  # 107090 missing
        touch(videos, f"20bn-jester-v1/{vid}/00001.jpg")
    p = prepare("jester", FIXTURES / "jester", videos=videos)
    assert splits(p) == {"train": 5, "val": 2}
    assert p.report.skipped == {"unlabelled": 2}
    assert p.labels == {"Doing other things": 0, "Swiping Left": 1, "Swiping Right": 2, "Thumb Up": 3}
    assert by_id(p)["34870"].extra["source"] == "20bn-jester-v1/34870"
    assert p.report.missing == ["107090"]
    assert p.dataset_json() == {"name": "jester", "num_classes": 4, "hflip": False, "media": "frames"}


def test_jester_unknown_label_and_sthv1(tmp_path):
    shutil.copytree(FIXTURES / "jester", tmp_path / "j")
    with open(tmp_path / "j/jester-v1-validation.csv", "a") as f:
        f.write("555;Zooming In With Two Fingers\n")
    p = prepare("jester", tmp_path / "j")
    assert [u["class"] for u in p.report.unknown_classes] == ["Zooming In With Two Fingers"]
    s = prepare("sthv1", FIXTURES / "sthv1")
    assert splits(s) == {"train": 3, "val": 1}
    assert s.labels["Pushing something from right to left"] == 2 and s.dataset_json()["hflip"] is False


def test_diving48_names_keep_official_ids(tmp_path):
    touch(tmp_path, "rgb/-mmq0PT-u8k_00155.mp4", "rgb/_8Vy3dlHg2w_00000.mp4")
    p = prepare("diving48", FIXTURES / "diving48", videos=tmp_path)
    assert splits(p) == {"train": 4, "test": 2}
    assert p.labels == {"00_Back_15som_05Twis_FREE": 0, "01_Back_15som_15Twis_FREE": 1, "02_Back_15som_25Twis_FREE": 2}
    row = by_id(p)["-mmq0PT-u8k_00156"]
    assert row.label == "02_Back_15som_25Twis_FREE" and row.extra["end_frame"] == "104"
    assert by_id(p)["-mmq0PT-u8k_00155"].extra["source"] == "rgb/-mmq0PT-u8k_00155.mp4"
    assert len(p.report.missing) == 4
    v1 = tmp_path / "v1"
    shutil.copytree(FIXTURES / "diving48", v1)
    (v1 / "Diving48_train.json").write_text('[{"vid_name": "old", "label": 0}]')
    assert "old" not in by_id(prepare("diving48", v1))  # the cleaned V2 list wins over V1
    (tmp_path / "bad").mkdir()
    shutil.copy(FIXTURES / "diving48/Diving48_vocab.json", tmp_path / "bad")
    (tmp_path / "bad/Diving48_V2_train.json").write_text('[{"vid_name": "a", "label": 0},\n {"vid_name": }]')
    with pytest.raises(VidnetError, match=r"Diving48_V2_train\.json:2: not valid JSON"):
        prepare("diving48", tmp_path / "bad")


def test_hacs_clips_and_segments(tmp_path):
    p = prepare("hacs", FIXTURES / "hacs")
    assert splits(p) == {"train": 3, "val": 1}
    assert p.report.skipped == {"negative": 2, "unlabelled": 1}
    assert p.labels == {"Applying sunscreen": 0, "Archery": 1}
    archery = sorted((r.time_start, r.time_end, r.dir_name) for r in p.rows if r.label == "Archery")
    assert archery == [(15.5, 17.5, "a2X2hz1G6i8_000015_000017"), (33.5, 35.5, "a2X2hz1G6i8_000033_000035")]
    assert {r.extra["cut"] for r in p.rows} == {"1"}
    assert by_id(p)["0O_qMHxBfXg"].extra["source"] == "Applying_sunscreen/v_0O_qMHxBfXg.mp4"

    s = prepare("hacs", FIXTURES / "hacs/HACS_segments_v1.1.1.json")
    assert splits(s) == {"train": 3, "val": 1} and s.report.skipped == {"unlabelled": 1}
    assert s.labels == {"Archery": 0, "Dodgeball": 1}
    assert sorted(r.dir_name for r in s.rows) == ["--0edUL8zmA_000005_000011", "--0edUL8zmA_000012_000088",
                                                  "-0Abcdefghi_000001_000009", "-0Dxcgp6zW0_000000_000030"]


def test_mit_categories_and_folders(tmp_path):
    touch(tmp_path, "training/blocking/getty-karate-video-id635808620_4.mp4",
          "validation/barking/yt-ZZQnV3oGTmk_100.mp4")
    p = prepare("mit", FIXTURES / "mit", videos=tmp_path)
    assert splits(p) == {"train": 4, "val": 2}
    assert p.labels == {"abseiling": 0, "applauding": 1, "barking": 2, "blocking": 3}
    assert by_id(p)["getty-karate-video-id635808620_4"].extra["source"] == (
        "training/blocking/getty-karate-video-id635808620_4.mp4")
    assert by_id(p)["yt-ZZQnV3oGTmk_100"].extra["source"] == "validation/barking/yt-ZZQnV3oGTmk_100.mp4"
    assert len(p.report.missing) == 4


def test_srtg_csvs_as_they_are(tmp_path):
    touch(tmp_path, "jpg/abseiling/---QUuC4vJs_000003_000013/frames.db")
    p = prepare("srtg", FIXTURES / "srtg", videos=tmp_path)
    assert splits(p) == {"train": 3, "val": 1}
    assert p.labels == {"abseiling": 0, "air drumming": 1}
    assert by_id(p)["---QUuC4vJs"].extra["source"] == "jpg/abseiling/---QUuC4vJs_000003_000013"
    assert p.report.missing == ["abseiling/--330hg-Ocw_000149_000159", "air drumming/--nQbRBEz2s_000104_000114",
                                "air drumming/-VtLx-mcPds_000019_000029"]


def test_write_prepared_round_trips(tmp_path):
    p = prepare("kinetics400", FIXTURES / "kinetics400")
    write_prepared(p, tmp_path / "out")
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == [
        "dataset.json", "index.csv", "labels.json", "prepare-report.json"]
    rows = read_index(tmp_path / "out/index.csv")
    assert [r.id for r in rows][:3] == ["---QUuC4vJs", "--330hg-Ocw", "0wR5jVB-WPk"]
    assert all(r.n_frames == 0 and r.path == "" for r in rows)
    assert rows[0].extra["source"] == "abseiling/---QUuC4vJs_000003_000013.mp4"
    assert read_labels(tmp_path / "out/labels.json") == p.labels
    report = json.loads((tmp_path / "out/prepare-report.json").read_text())
    assert report["splits"] == {"train": 5, "val": 2} and report["skipped"] == {"unlabelled": 2}
    assert report["missing"] == {"count": 0, "videos": []} and report["videos"] is None


def test_unknown_dataset_and_missing_paths(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset 'ucf'"):
        prepare("ucf", FIXTURES / "ucf101")
    with pytest.raises(UsageError, match="annotations not found"):
        prepare("ucf101", tmp_path / "nope")
    with pytest.raises(UsageError, match="videos folder not found"):
        prepare("ucf101", FIXTURES / "ucf101", videos=tmp_path / "nope")


def test_sthv2_templates_are_classes(tmp_path):
    touch(tmp_path, "20bn-something-something-v2/78687.webm")
    p = prepare("sthv2", FIXTURES / "sthv2", videos=tmp_path)
    assert splits(p) == {"train": 3, "val": 1} and p.report.skipped == {"unlabelled": 2}
    assert p.labels == {"Approaching something with your camera": 0, "Pushing something from left to right": 1,
                        "Pushing something from right to left": 2}
    assert by_id(p)["78687"].label == "Pushing something from left to right"
    assert by_id(p)["78687"].extra["source"] == "20bn-something-something-v2/78687.webm"
    assert p.dataset_json() == {"name": "sthv2", "num_classes": 3, "hflip": False, "media": "video"}


def test_write_prepared_is_all_or_nothing(tmp_path, monkeypatch):
    import vidnet.data.prepare as mod

    p = prepare("mit", FIXTURES / "mit")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mod, "write_labels", boom)
    with pytest.raises(OSError):
        write_prepared(p, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
