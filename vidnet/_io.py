"""Small file helpers shared by every writer and reader.

* Writes are atomic: a temporary file beside the target, renamed onto it only when complete. Temporary
  names carry the host and the process id (``.<name>.<host>.<pid>.<token>.tmp``), so that
  `remove_orphan_temporaries` deletes only what a process that is gone left behind, never the file a live
  run is writing.
* `inside` is the one containment check: every path built from data (an index row, a video id) is
  resolved and must lie inside its root.
* `dir_lock` is the advisory lock that lets one run at a time write into a folder (or, shared, lets several
  runs that write disjoint parts of it, the shards of one conversion, run together while excluding the rest).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vidnet._log import get_logger
from vidnet.errors import UsageError

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "temp_path",
    "remove_orphan_temporaries",
    "list_temporaries",
    "host_name",
    "inside",
    "dir_lock",
]

_TEMP = re.compile(r"^\..+?\.(?:(?P<host>[A-Za-z0-9-]+)\.)?(?P<pid>\d+)(?:\.[0-9a-f]+)?\.tmp$")
"""A temporary file of `temp_path` (``.<name>.<host>.<pid>.<token>.tmp``; older writers left ``.<name>.<pid>.tmp``)."""


def host_name() -> str:
    """This host's name as temporary files carry it."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` carrying this host and process id (nothing is created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:  # a zombie (killed, not yet reaped: a container's init may never reap it) is gone too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def list_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> list[tuple[Path, str | None, int]]:
    """The temporary files of `temp_path` under ``folder``: ``(path, host or None, pid)`` each."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    # os.walk, not Path.rglob: a folder that vanishes mid-walk (another shard's failed video removes the one it
    # made) is skipped, where rglob raises FileNotFoundError.
    for parent, dirs, files in os.walk(folder):
        for name in files:
            m = _TEMP.match(name)
            if m is not None:
                out.append((Path(parent) / name, m["host"], int(m["pid"])))
        if not recursive:
            dirs.clear()
    return out


def remove_orphan_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> int:
    """Delete the temporary files under ``folder`` whose writer (a process of this host) is gone.

    Files of live processes, and of other hosts (a shared file system), are left alone.

    Returns:
        How many were removed.
    """
    host, n = host_name(), 0
    for tmp, tmp_host, pid in list_temporaries(folder, recursive=recursive):
        if tmp_host not in (None, host) or _pid_alive(pid):
            continue
        try:
            tmp.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader never sees a half-written file: either the old content or the complete new one. An `OSError`
    (disk full, read-only file system) names ``path``, not the temporary file, and leaves nothing behind;
    a process killed mid-write leaves a temporary that `remove_orphan_temporaries` recognises.
    """
    path = Path(path)
    tmp_path = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the usual mode, umask applied
        os.close(fd)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        if err.filename is None or str(err.filename) == str(tmp_path):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        try:
            tmp_path.unlink()
        except OSError:
            pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int | None = 2) -> None:
    """Write JSON to ``path`` atomically (UTF-8, keys kept in insertion order)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def inside(root: str | os.PathLike, path: str | os.PathLike, *, resolve: bool = True) -> Path | None:
    """``path`` (relative paths are taken from ``root``) made absolute, if it lies inside ``root``; else None.

    Args:
        root: the folder that must contain ``path``.
        path: the path to check.
        resolve: follow symbolic links on both sides (for writes: a link cannot lead a write out of the
            root). False checks the path as written (``..`` and absolute paths), for reads where a link
            placed by the user (a folder of links to the real videos) is deliberate.
    """
    if resolve:
        base = Path(root).resolve()
        target = (base / path).resolve()
    else:
        base = Path(os.path.normpath(os.path.abspath(root)))
        target = Path(os.path.normpath(base / path))
    return target if target == base or target.is_relative_to(base) else None


@contextmanager
def dir_lock(folder: str | os.PathLike, *, what: str = "run", wait: bool = False, shared: bool = False,
             name: str = ".vidnet.lock") -> Iterator[Path]:
    """Hold an advisory lock (``fcntl.flock``) on ``folder/<name>`` for the block.

    The lock file records the (last) holder's host and pid. The lock is released when the block ends or the
    process dies, whatever the way (the file itself is left in place, empty of meaning).

    Args:
        folder: the folder to lock (created if needed).
        what: what holds it, for the message (``convert``).
        wait: block until the holder is done instead of failing.
        shared: take the lock shared: other shared holders (the shards of one conversion) run together, an
            exclusive holder (a plain conversion, a merge) excludes them all and is excluded by any of them.
        name: the lock file's name (one folder may hold several locks: one per shard).

    Raises:
        UsageError: (exit 2) another process holds the lock and ``wait`` is False; the message names its pid.
    """
    folder = Path(folder)
    lock = folder / name
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            if not wait:
                raise UsageError(f"{folder}: in use by {holder}; wait for it to finish (or pass --wait)") from None
            get_logger(__name__).warning("%s: in use by %s; waiting for it to finish", folder, holder)
            fcntl.flock(fd, mode)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"vidnet {what} pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # closing releases the lock
