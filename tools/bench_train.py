"""Engine overhead: steps/s of `vidnet.train.loop.train` against a bare PyTorch loop on the same data.

Both run the same model, optimizer and precision on clips already in memory (a dataset returning
pre-made uint8 tensors), so the difference is the engine's own work: learning-rate and shape bookkeeping,
metrics, logging, the final checkpoint. Runs alternate and the best of ``--repeats`` is kept for each, which
filters out other processes on a shared machine.

    python tools/bench_train.py --network tiny_3d --steps 40 --batch 16 --frames 8 --size 64 [--precision bf16]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.data import DataLoader, Dataset

from vidnet.data.preprocessing import KINETICS_MEAN, KINETICS_STD
from vidnet.network import create_model
from vidnet.train.config import TrainConfig
from vidnet.train.loop import train


class InMemoryClips(Dataset):
    """``n`` random uint8 clips with labels, following VideoClipDataset's item contract."""

    def __init__(self, n: int, frames: int, size: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.clips = torch.randint(0, 256, (n, 3, frames, size, size), dtype=torch.uint8, generator=g)
        self.targets = torch.randint(0, classes, (n,), generator=g).tolist()
        self.labels = {str(i): i for i in range(classes)}
        self.num_classes = classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        return {"clip": self.clips[i], "label": self.targets[i], "index": i}


def bare(model, data, *, steps: int, batch: int, precision: str) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    mean = torch.tensor(KINETICS_MEAN).mul(255).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).mul(255).view(3, 1, 1, 1)
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    done, t0 = 0, time.perf_counter()
    while done < steps:
        for b in loader:
            x = (b["clip"].float() - mean) / std
            with torch.autocast("cpu", dtype=dtype, enabled=precision != "fp32"):
                loss = torch.nn.functional.cross_entropy(model(x).float(), torch.as_tensor(b["label"]))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - t0)


def engine(model, data, *, steps: int, batch: int, precision: str, network: str) -> float:
    per_epoch = len(data) // batch
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_flat({
            "network": network, "dataset": tmp, "model_dir": tmp, "workers": 0, "batch_size": batch,
            "end_epoch": -(-steps // per_epoch), "lr_steps": [], "lr_base": 0.01, "precision": precision,
            "clip_length": data.clips.shape[2], "clip_size": data.clips.shape[3], "tensorboard": False,
            "log_interval": 10, "max_steps": steps, "save_frequency": 1000,
        })
        t0 = time.perf_counter()
        res = train(cfg, model=model, train_set=data)
        return res.steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="tiny_3d")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    data = InMemoryClips(a.batch * 10, a.frames, a.size, 8)
    results = {"bare": [], "engine": []}
    for _ in range(a.repeats):
        torch.manual_seed(0)
        results["bare"].append(bare(create_model(a.network, num_classes=8), data, steps=a.steps, batch=a.batch,
                                    precision=a.precision))
        torch.manual_seed(0)
        results["engine"].append(engine(create_model(a.network, num_classes=8), data, steps=a.steps, batch=a.batch,
                                        precision=a.precision, network=a.network))
        print({k: [round(v, 3) for v in vs] for k, vs in results.items()}, flush=True)
    b, e = max(results["bare"]), max(results["engine"])
    print(f"{a.network} batch {a.batch}x{a.frames}x{a.size}x{a.size} {a.precision}: bare {b:.3f} steps/s, "
          f"vidnet train {e:.3f} steps/s, ratio {e / b:.3f}")


if __name__ == "__main__":
    main()
