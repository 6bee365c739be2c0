"""Exceptions that carry a message meant for the user (one line, naming the file and the reason)."""

from __future__ import annotations


class VidnetError(Exception):
    """An error the command line reports as one line and a non-zero exit, without a traceback."""

    exit_code = 1


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
