"""Process pools for CPU-bound batch work (conversion, sample generation, benchmark set-up).

Pools start from a fork server rather than by forking the caller: by the time a pool is needed the caller
may run threads (OpenCV, OpenMP, PyTorch), and a plain fork copies their locks in a locked state, which
deadlocked conversion workers inside a test session. The fork server is a fresh single-threaded process,
so its forks are safe, and still cheaper than spawning an interpreter per worker.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.pool import Pool

__all__ = ["process_pool"]


def process_pool(processes: int, initializer: Callable[[], None] | None = None) -> Pool:
    """A ``multiprocessing.Pool`` of ``processes`` workers started from a fork server (spawn where absent)."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(processes, initializer=initializer)
