import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidnet.cli import app, main
from vidnet.data.index import read_index

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "prepare"


def test_prepare_ucf101_with_videos(tmp_path):
    videos = tmp_path / "UCF-101"
    for name in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "JumpRope/v_JumpRope_g15_c01.avi"):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(b"")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["prepare", "ucf101", "--annotations", str(FIXTURES / "ucf101"),
                                      "--videos", str(videos), "--out", str(out), "--split-number", "3"])
    assert result.exit_code == 0, result.output
    assert "ucf101: 10 videos, 4 classes" in result.output and "missing videos" in result.output
    rows = read_index(out / "index.csv")
    assert [(r.id, r.split, r.extra["source"]) for r in rows if r.extra["source"]] == [
        ("v_ApplyEyeMakeup_g01_c01", "train", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"),
        ("v_JumpRope_g15_c01", "test", "JumpRope/v_JumpRope_g15_c01.avi"),
    ]
    report = json.loads((out / "prepare-report.json").read_text())
    assert report["splits"] == {"test": 1, "train": 9} and report["found"] == {"test": 1, "train": 1}
    assert report["missing"]["count"] == 8
    assert json.loads((out / "dataset.json").read_text()) == {
        "name": "ucf101", "num_classes": 4, "hflip": True, "media": "video"}


def test_prepare_jester_without_videos(tmp_path):
    result = CliRunner().invoke(app, ["prepare", "jester", "-a", str(FIXTURES / "jester"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "videos not checked" in result.output
    assert json.loads((tmp_path / "dataset.json").read_text())["hflip"] is False
    assert json.loads((tmp_path / "labels.json").read_text()) == {
        "Doing other things": 0, "Swiping Left": 1, "Swiping Right": 2, "Thumb Up": 3}


def test_prepare_bad_input_writes_nothing(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "kiss_test_split1.txt").write_text("a_kiss_0.avi 1\na_kiss_1.avi 7\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["prepare", "hmdb51", "-a", str(ann), "-o", str(out)])
    assert result.exit_code == 1
    assert "error: " in result.output and "kiss_test_split1.txt:2" in result.output
    assert not out.exists()


def test_main_turns_errors_into_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["vidnet", "prepare", "ucf101", "-a", str(tmp_path / "nope"), "-o",
                                      str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: annotations not found"
    result = CliRunner().invoke(app, ["prepare", "ucf101", "-a", str(FIXTURES / "ucf101"), "-o", str(tmp_path),
                                      "--split-number", "4"])
    assert result.exit_code == 2


def test_report_prints_brackets_literally(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "x-labels.csv").write_text("Holding something\n")
    (ann / "x-train.csv").write_text("1;Holding something\n2;Putting [something] on [red]\n")
    result = CliRunner().invoke(app, ["prepare", "sthv1", "-a", str(ann), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Putting [something] on [red]" in result.output
