"""Logging set-up: coloured console output through coloredlogs, plain text to files."""

from __future__ import annotations

import logging
import re
import sys

import coloredlogs

_FMT = "%(asctime)s %(levelname)s %(message)s"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainFormatter(logging.Formatter):
    """Log files stay plain text: colour codes a console message carries (coloured speeds) are removed."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI_ESCAPE.sub("", super().format(record))


class _Stderr:
    """Writes to whatever ``sys.stderr`` is now, so a live progress display that redirects it stays intact."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup_logging(verbosity: int = 0, log_file: str | None = None) -> None:
    """Configure the ``vidnet`` logger.

    Args:
        verbosity: -1 quiet (warnings only), 0 info, 1+ debug.
        log_file: also append plain-text records to this file.
    """
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger = logging.getLogger("vidnet")
    logger.handlers.clear()
    logger.propagate = False
    coloredlogs.install(level=level, logger=logger, fmt=_FMT, datefmt="%H:%M:%S", stream=_Stderr(),
                        isatty=sys.stderr.isatty())
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(_PlainFormatter(_FMT))
        logger.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    """A child of the ``vidnet`` logger (``name`` is usually ``__name__``)."""
    return logging.getLogger(name if name.startswith("vidnet") else f"vidnet.{name}")
