"""Data commands: sample, convert, info, quickstart (filled below as they land)."""

from __future__ import annotations

import typer

from vidnet import __version__
from vidnet.cli._app import app


@app.command()
def version() -> None:
    """Print vidnet's version and the versions of its main dependencies."""
    import numpy
    import torch

    typer.echo(f"vidnet {__version__} (torch {torch.__version__}, numpy {numpy.__version__})")
