"""Exceptions that carry a message meant for the user (one line, naming the file and the reason)."""

from __future__ import annotations

import errno
import re
import sqlite3

# "Caught ClipError in DataLoader worker process 0.\nOriginal Traceback ...\nvidnet.errors.ClipError: <message>"
_WORKER_TRACEBACK = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_QUALIFIED_NAME = re.compile(r"^[\w.]+: ")


class VidnetError(Exception):
    """An error the command line reports as one line and a non-zero exit, without a traceback.

    PyTorch's DataLoader re-raises a worker's exception in the main process as ``type(err)(text)``, ``text``
    holding the worker's whole traceback; such an error keeps the worker's one-line message and the traceback
    is kept in ``worker_traceback``.
    """

    exit_code = 1

    def __init__(self, *args: object) -> None:
        self.worker_traceback: str | None = None
        if len(args) == 1 and isinstance(args[0], str) and _WORKER_TRACEBACK.match(args[0]):
            self.worker_traceback = args[0]
            lines = [line for line in args[0].splitlines() if line.strip()]
            args = (_QUALIFIED_NAME.sub("", lines[-1], count=1),)
        super().__init__(*args)


class UsageError(VidnetError):
    """The user asked for something impossible (bad option, missing input)."""

    exit_code = 2


class StoreError(VidnetError):
    """A frames.db store is missing, unreadable or inconsistent."""


class CorruptFrameError(StoreError):
    """A stored frame does not decode."""


class ClipError(VidnetError):
    """A clip cannot be produced from a video (missing or unreadable store, corrupt frame, too few frames).

    Attributes:
        video: the video's store folder relative to the dataset root (``<label>/<video_id>``).
        reason: the short category (``missing``, ``unreadable``, ``corrupt``, ``short``), for summaries.
    """

    def __init__(self, message: str, *, video: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.video = video
        self.reason = reason


_PLAIN = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "name too long",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
}
_PLAIN_SQLITE = {
    "database or disk is full": "disk full",
    "attempt to write a readonly database": "read-only file system",
    "file is not a database": "not a SQLite database",
    "unable to open database file": "cannot open the database file",
}


def plain_reason(err: BaseException) -> str:
    """The reason of an I/O or SQLite failure in plain words (``disk full (no space left on device)``),
    without the file name or the exception's class."""
    if isinstance(err, OSError):
        return _PLAIN.get(err.errno or 0) or (err.strerror or str(err)).lower()
    if isinstance(err, sqlite3.Error):
        return _PLAIN_SQLITE.get(str(err), str(err))
    return str(err)
