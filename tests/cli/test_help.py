"""Every command's --help shows the install hints as written (rich markup must not swallow ``[extra]``)."""

from __future__ import annotations

import re

import click
import typer
from typer.testing import CliRunner

from vidnet.cli import app


def _commands(group: click.Command, path: tuple[str, ...] = ()):
    for name, cmd in getattr(group, "commands", {}).items():
        yield (*path, name), cmd
        yield from _commands(cmd, (*path, name))


def test_help_keeps_extras_in_install_hints():
    runner = CliRunner()
    seen = 0
    for path, _ in _commands(typer.main.get_command(app)):
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        text = " ".join(res.output.split())
        for hint in re.findall(r"pip install '([^']*)'", text):
            seen += 1
            assert re.fullmatch(r"vidnet\[\w+\]", hint), f"vidnet {' '.join(path)} --help shows pip install '{hint}'"
    assert seen >= 1  # export's help names its extra
