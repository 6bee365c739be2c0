"""Exceptions that carry a message meant for the user (one line, naming the file and the reason)."""

from __future__ import annotations

import re

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
