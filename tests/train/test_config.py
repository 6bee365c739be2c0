"""Config validation names the offending option; config files take flat or sectioned keys."""

from __future__ import annotations

import pytest

from vidnet.errors import UsageError
from vidnet.train.config import TrainConfig, load_config_file

BASE = {"network": "mtnet_xs", "dataset": "data"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"clip_size": 4}, "--clip-size"),
        ({"clip_size": "a,b"}, "--clip-size"),
        ({"clip_length": 0}, "--clip-length"),
        ({"batch_size": -2}, "--batch-size"),
        ({"lr_steps": "30,10"}, "--lr-steps"),
        ({"long_cycles": True, "lr_steps": (), "end_epoch": 10}, "--long-cycles"),
        ({"long_cycles": True, "lr_steps": "12", "end_epoch": 10}, "--long-cycles"),
        ({"precision": "fp8"}, "--precision"),
        ({"precision": "fp16"}, "--precision 'fp16': needs a GPU"),
        ({"optimizer": "adam"}, "--optimizer"),
        ({"bad_data": "ignore"}, "--bad-data"),
        ({"label_smoothing": 1.0}, "--label-smoothing"),
        ({"ema": 1.5}, "--ema"),
        ({"fine_tune": True}, "--fine-tune"),
        ({"train_frame_interval": "4-2"}, "--train-frame-interval"),
        ({"resume": "auto", "resume_epoch": 3}, "--resume-epoch"),
        ({"lr_base": 0}, "--lr-base"),
        ({"clip_lenght": 8}, "unknown option --clip-lenght"),
        ({"bn_sub_batch": "sometimes"}, "--bn-sub-batch"),
        ({"bn_sub_batch": 0}, "--bn-sub-batch"),
        ({"lr_scale_max": 0.5}, "--lr-scale-max"),
        ({"long_cycle_min_frames": 0}, "--long-cycle-min-frames"),
    ],
)
def test_validation_names_the_flag(extra, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        TrainConfig.from_flat({**BASE, **extra})


def test_required():
    with pytest.raises(UsageError, match="--network is required"):
        TrainConfig.from_flat({"dataset": "x"})
    with pytest.raises(UsageError, match="--dataset is required"):
        TrainConfig.from_flat({"network": "x"})


def test_parsing_and_defaults():
    cfg = TrainConfig.from_flat({**BASE, "clip-size": "112,128", "lr-steps": "[5, 9]", "optimizer": "adamw",
                                 "train_frame_interval": [1, 2]})
    assert cfg.data.clip_size == (112, 128)
    assert cfg.schedule.lr_steps == (5, 9)
    assert cfg.optim.lr_base == 1e-3
    assert cfg.data.train_frame_interval == "1,2"
    assert TrainConfig.from_flat(BASE).optim.lr_base == 0.1


def test_round_trip_through_to_dict():
    cfg = TrainConfig.from_flat({**BASE, "clip_size": 96, "long_cycles": True, "lr_steps": [3], "end_epoch": 6})
    again = TrainConfig.from_flat(cfg.to_dict())
    assert again == cfg


def test_yaml_and_toml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("network: mtnet_xs\ndataset: d\nschedule:\n  batch_size: 3\nclip-length: 8\n")
    cfg = TrainConfig.from_flat(load_config_file(y))
    assert (cfg.schedule.batch_size, cfg.data.clip_length) == (3, 8)
    t = tmp_path / "c.toml"
    t.write_text('network = "mtnet_xs"\ndataset = "d"\n[optim]\nweight_decay = 0.5\n')
    assert TrainConfig.from_flat(load_config_file(t)).optim.weight_decay == 0.5
    bad = tmp_path / "bad.toml"
    bad.write_text("network = \n")
    with pytest.raises(UsageError, match="bad.toml: not a valid config file"):
        load_config_file(bad)
    t.write_text('[optim]\nclip_length = 3\n')
    with pytest.raises(UsageError, match="section 'optim' has no option 'clip_length'"):
        TrainConfig.from_flat(load_config_file(t))
    with pytest.raises(UsageError, match="config file not found"):
        load_config_file(tmp_path / "none.yaml")
