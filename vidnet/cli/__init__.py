"""Command line: ``vidnet <command>``. One module per command group registers its commands on ``app``."""

from __future__ import annotations

# Command groups register themselves on import: one line per module in the block below.
from vidnet.cli import bench as _bench  # noqa: F401
from vidnet.cli import checkpoint as _checkpoint  # noqa: F401
from vidnet.cli import data as _data  # noqa: F401
from vidnet.cli import efficiency as _efficiency  # noqa: F401
from vidnet.cli import evaluate as _evaluate  # noqa: F401
from vidnet.cli import models as _models  # noqa: F401
from vidnet.cli import prepare as _prepare  # noqa: F401
from vidnet.cli import slurm as _slurm  # noqa: F401
from vidnet.cli import train as _train  # noqa: F401
from vidnet.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point (``vidnet``); commands report their own errors (see ``vidnet.cli._app``)."""
    app()
