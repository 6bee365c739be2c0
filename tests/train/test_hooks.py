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


def test_tensorboard_events_hold_what_researchers_look_for(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.train.test_loop import make_cfg, run

    res = run(make_cfg(tmp_path, tensorboard=True, log_interval=1, end_epoch=2))
    events = EventAccumulator(str(res.run_dir / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    want = {"train/loss", "train/top1", "train/top5", "train/lr", "speed/read", "speed/forward", "speed/backward",
            "time/data_s", "time/step_s", "shape/batch", "shape/frames", "shape/crop", "train_epoch/loss",
            "train_epoch/clips_per_s", "val_epoch/loss", "val_epoch/top1", "val_epoch/top5"}
    assert want <= scalars, want - scalars
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 13))  # one point per optimizer step, 2 epochs x 6
    assert {e.value for e in events.Scalars("shape/batch")} == {4.0} and events.Scalars("shape/crop")[0].value == 16
    val = [e.value for e in events.Scalars("val_epoch/top1")]
    assert len(val) == 2 and val[-1] == pytest.approx(res.val["top1"])
    assert [e.step for e in events.Images("val/confusion")] == [0, 1]


def test_confusion_image_rows_scaled():
    import numpy as np

    from vidnet.train.hooks import confusion_image

    img = confusion_image(np.array([[3, 1], [0, 0]]), min_size=4)
    assert img.shape == (4, 4) and img[0, 0] == 1 and img[0, 3] == pytest.approx(1 / 3) and img[3, 3] == 0


def test_tensorboard_asked_without_the_package_is_one_line(tmp_path, monkeypatch):
    import builtins

    from vidnet.errors import UsageError
    from vidnet.train.hooks import TensorBoardSink

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UsageError, match=r"^--tensorboard: the tensorboard package is not installed: "
                                         r"pip install 'vidnet\[tb\]'$"):
        TensorBoardSink.create(tmp_path / "tb", True)
    assert TensorBoardSink.create(tmp_path / "tb", None) is None and TensorBoardSink.create(tmp_path, False) is None
