"""Metric sinks: speed colours with the original thresholds, the data-bound note, CSV rows per epoch."""

from __future__ import annotations

import csv

import pytest

from vidnet.train.hooks import ConsoleSink, CSVSink, data_bound, speed_colour


@pytest.mark.parametrize(
    ("kind", "value", "colour"),
    [("read", 99.9, "red"), ("read", 100, "yellow"), ("read", 2999, "yellow"), ("read", 3000, "green"),
     ("forward", 49, "red"), ("forward", 50, "yellow"), ("forward", 300, "green"),
     ("backward", 19.9, "red"), ("backward", 20, "yellow"), ("backward", 199, "yellow"), ("backward", 200, "green")],
)
def test_speed_thresholds(kind, value, colour):
    assert speed_colour(kind, value) == colour


RECORD = {"epoch": 2, "iteration": 40, "iterations": 298, "loss": 1.2, "top1": 0.5, "top5": 0.9, "lr": 0.1,
          "batch": 32, "frames": 16, "height": 112, "width": 112, "read": 2100.0, "forward": 380.0, "backward": 190.0}


def test_console_line_colours_only_in_the_console():
    plain = ConsoleSink(colour=False, progress=False).format_step(RECORD)
    assert plain == ("Epoch [2] Batch [40/298] Speed (r=2.10e+03 f=3.80e+02 b=1.90e+02) clip/s loss=1.2000 "
                     "top1=0.500 top5=0.900 batch=(32,3,16,112,112) lr=1.00e-01")
    coloured = ConsoleSink(colour=True, progress=False).format_step(RECORD)
    assert "\033[93m2.10e+03\033[0m" in coloured and "\033[92m3.80e+02\033[0m" in coloured
    assert "\033[93m1.90e+02\033[0m" in coloured


def test_data_bound_note():
    slow = {**RECORD, "read": 50.0}  # 1/50 > 1/380 + 1/190
    assert data_bound(slow) and not data_bound(RECORD)
    assert "data loading is the bottleneck" in ConsoleSink(colour=False, progress=False).format_step(slow)


def test_csv_rows_and_resume_truncation(tmp_path):
    sink = CSVSink(tmp_path)
    for e in range(3):
        sink.epoch("train", {"epoch": e, "loss": 1.0 / (e + 1), "top1": 0.1 * e, "top5": 0.5, "lr": 0.1,
                             "clips_per_s": 10.0, "time": 2.0})
    CSVSink(tmp_path, start_epoch=1)  # a run resumed at epoch 1 drops epochs 1 and 2
    rows = list(csv.DictReader((tmp_path / "train.csv").open()))
    assert [r["epoch"] for r in rows] == ["0"]
    assert list(rows[0]) == ["epoch", "loss", "top1", "top5", "lr", "clips_per_s", "time"]


def test_log_file_stays_plain_when_the_console_is_coloured(tmp_path, monkeypatch):
    import logging

    from vidnet._log import setup_logging

    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    setup_logging(0, str(tmp_path / "train.log"))
    try:
        ConsoleSink(colour=True, progress=False, interval=1).step({**RECORD, "iteration": 0})
    finally:
        for handler in logging.getLogger("vidnet").handlers:
            handler.close()
        logging.getLogger("vidnet").handlers.clear()
    text = (tmp_path / "train.log").read_text()
    assert "r=2.10e+03 f=3.80e+02 b=1.90e+02" in text and "\033" not in text
