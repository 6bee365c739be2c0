"""Two processes with gloo on the CPU: DDP keeps the replicas identical, only rank 0 writes, shapes agree."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, multigrid: bool) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from tests.train.conftest import MotionClips, TinyNet
    from vidnet.train.config import TrainConfig
    from vidnet.train.loop import train

    extra = {"long_cycles": True, "short_cycles": True, "batch_size": 1, "end_epoch": 2, "lr_steps": [1]} \
        if multigrid else {}
    cfg = TrainConfig.from_flat({"network": "tiny", "dataset": os.path.join(out, "motion"), "model_dir": out,
                                 "workers": 0, "batch_size": 2, "end_epoch": 2, "lr_steps": [1], "clip_length": 4,
                                 "clip_size": 16, "tensorboard": False, "log_interval": 1, "lr_base": 0.05,
                                 "keep_last": 0,  # the test reads ep-0001.pth
                                 **extra})
    torch.manual_seed(0)
    model = TinyNet()
    res = train(cfg, model=model, train_set=MotionClips(96 if multigrid else 24), val_set=MotionClips(9, seed=4))
    model_state = torch.load(os.path.join(out, "motion", "tiny", "checkpoints", "ep-0001.pth"),
                             weights_only=True)["model"] if rank == 0 else None
    torch.save({"steps": res.steps, "val": res.val, "epochs": res.epochs, "ckpt1": model_state,
                "weights": {k: v.clone() for k, v in model.state_dict().items()}},
               os.path.join(out, f"rank{rank}.pt"))


def _run(tmp_path, multigrid):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), multigrid), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_processes_gloo(tmp_path):
    r0, r1 = _run(tmp_path, multigrid=False)
    assert r0["steps"] == r1["steps"] == 12  # 24 clips / (2 ranks x batch 2) x 2 epochs
    for k, v in r0["weights"].items():  # gradients are averaged, so the replicas stay identical
        if "running" not in k:  # BatchNorm statistics are per process without SyncBN
            assert torch.equal(v, r1["weights"][k]), k
    assert r0["val"] == r1["val"]  # validation is summed over both ranks (9 clips, 5 + 4)
    final = torch.load(tmp_path / "motion" / "tiny" / "checkpoints" / "ep-0002.pth", weights_only=True)
    assert final["step"] == 12
    assert len(list((tmp_path / "motion" / "tiny").glob("train.csv"))) == 1


def test_two_processes_multigrid(tmp_path):
    r0, r1 = _run(tmp_path, multigrid=True)
    assert r0["steps"] == r1["steps"] > 0 and r0["epochs"] == 3  # 2 base epochs x 1.5
    state = r0["ckpt1"]
    assert state is not None and any(k.endswith("running_mean") for k in state)
