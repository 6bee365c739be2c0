"""Command line: ``vidnet <command>``. One module per command group registers its commands on ``app``."""

from __future__ import annotations

import sys

import typer

# Command groups register themselves on import: one line per module in the block below.
from vidnet.cli import data as _data  # noqa: F401
from vidnet.cli import models as _models  # noqa: F401
from vidnet.cli._app import app
from vidnet.errors import VidnetError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: runs the app and turns :class:`VidnetError` into one line and an exit code."""
    try:
        app()
    except VidnetError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
