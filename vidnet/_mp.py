"""Process pools for CPU-bound batch work (conversion, sample generation, benchmark set-up).

Pools start from a fork server rather than by forking the caller: by the time a pool is needed the caller
may run threads (OpenCV, OpenMP, PyTorch), and a plain fork copies their locks in a locked state, which
deadlocked conversion workers inside a test session. The fork server is a fresh single-threaded process,
so its forks are safe, and still cheaper than spawning an interpreter per worker.

Workers end with their parent: on Linux each asks the kernel for a SIGTERM when the process that started it
dies, so a killed run leaves no orphan finishing its task only to print ``BrokenPipeError`` into the
terminal (the temporary files it leaves are removed by the next run, see `vidnet._io`).
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.pool import Pool

__all__ = ["process_pool"]


def process_pool(processes: int, initializer: Callable[[], None] | None = None) -> Pool:
    """A ``multiprocessing.Pool`` of ``processes`` workers started from a fork server (spawn where absent)."""
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(processes, initializer=functools.partial(_init_worker, initializer,
                                                                                 os.getpid()))


def _init_worker(initializer: Callable[[], None] | None, parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        # The fork server, not the caller, is our parent: it exits when the caller dies, and so do we. If
        # the caller died before the request above, nothing would tell us: check once.
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
    if initializer is not None:
        initializer()
