"""Processes and devices: torchrun detection, process groups (NCCL on GPUs, gloo on CPU), self-launch.

``vidnet train --gpus N`` (N > 1) re-runs itself under ``torch.distributed.run`` with N processes on this
node; ``torchrun --nproc-per-node N -m vidnet train ...`` does the same explicitly and adds multi-node
options (``--nnodes``, ``--node-rank``, ``--master-addr``, ``--master-port``). Each process reads
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from the environment torchrun sets. Only rank 0 logs and writes.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vidnet.errors import UsageError

__all__ = ["DistInfo", "under_torchrun", "setup", "cleanup", "launch", "all_reduce_sum", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    """True inside a process started by torchrun (or ``vidnet train --gpus N``)."""
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def setup(gpus: int) -> DistInfo:
    """Pick the device and join the process group when torchrun started us.

    Args:
        gpus: 0 for the CPU, otherwise use CUDA (one GPU per process).
    """
    use_cuda = gpus > 0
    if use_cuda and not torch.cuda.is_available():
        raise UsageError(f"--gpus {gpus}: no CUDA device is available (use --gpus 0 for the CPU)")
    if not under_torchrun():
        return DistInfo(device=torch.device("cuda", 0) if use_cuda else torch.device("cpu"))
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible on this node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30),
                                device_id=device if use_cuda else None)
    return DistInfo(rank, local_rank, world, device)


def cleanup(*, wait: bool = False) -> None:
    """Leave the process group (if any).

    Args:
        wait: Meet every other process at a barrier first (the normal end of a run), so that no process tears
            its connections down while a peer still uses them.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (returns them unchanged without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over all processes, in place (nothing without a process group)."""
    if not tensors or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1).double() for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        t.copy_(part.view_as(t))


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``vidnet <argv>`` in ``nproc`` processes on this node through ``torch.distributed.run``.

    Returns the launcher's exit status. The children see torchrun's environment, so they train instead of
    launching again.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "vidnet", *argv]
    return subprocess.call(cmd)
