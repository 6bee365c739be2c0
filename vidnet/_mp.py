"""Process pools for CPU-bound batch work (conversion, sample generation, benchmark set-up).

Pools start from a fork server rather than by forking the caller: by the time a pool is needed the caller
may run threads (OpenCV, OpenMP, PyTorch), and a plain fork copies their locks in a locked state, which
deadlocked conversion workers inside a test session. The fork server is a fresh single-threaded process,
so its forks are safe, and still cheaper than spawning an interpreter per worker.

Workers end with the process that made the pool: each watches it (a pidfd on Linux, else a poll each
second), so a killed run leaves no orphan finishing its task only to print ``BrokenPipeError`` into the
terminal (the temporary files it leaves are removed by the next run, see `vidnet._io`).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import select
import threading
import time
from collections.abc import Callable
from multiprocessing.pool import Pool

__all__ = ["process_pool"]


def process_pool(processes: int, initializer: Callable[[], None] | None = None) -> Pool:
    """A ``multiprocessing.Pool`` of ``processes`` workers started from a fork server (spawn where absent)."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(processes, initializer=functools.partial(_init_worker, initializer,
                                                                                 os.getpid()))


def _init_worker(initializer: Callable[[], None] | None, parent: int) -> None:
    threading.Thread(target=_exit_with, args=(parent,), name="vidnet-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer()


def _exit_with(parent: int) -> None:
    """Exit this worker as soon as ``parent`` is gone (its fork server outlives it, so no signal tells us)."""
    try:
        fd = os.pidfd_open(parent)  # Linux 5.3+: readable when the process ends
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
    os._exit(1)
