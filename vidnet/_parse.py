"""Small parsers of command-line values shared by several commands and tools."""

from __future__ import annotations

import re

from vidnet.errors import UsageError

__all__ = ["parse_clip"]


def parse_clip(text: str) -> tuple[int, int, int]:
    """``"16x112x112"`` -> ``(16, 112, 112)`` (frames x height x width).

    Raises:
        UsageError: not three positive integers joined by ``x``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*", text.lower())
    if not m or 0 in (dims := tuple(int(g) for g in m.groups())):
        raise UsageError(f"--clip {text!r}: expected TxHxW with positive integers, e.g. 16x112x112")
    return dims
