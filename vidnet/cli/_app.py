"""The Typer application object; command modules attach their commands to it.

Every command is wrapped so that a :class:`~vidnet.errors.VidnetError` becomes one line on stderr
(``error: <file>: <reason>``) and the error's exit code, never a traceback; Ctrl-C exits with 130.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from vidnet.errors import VidnetError


class CommandApp(typer.Typer):
    """A Typer application whose commands report `VidnetError` as one line (see the module docstring)."""

    def command(self, *args, **kwargs) -> Callable:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def run(*a, **k):
                try:
                    return fn(*a, **k)
                except VidnetError as err:
                    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
                    raise typer.Exit(err.exit_code) from None
                except KeyboardInterrupt:
                    typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
                    raise typer.Exit(130) from None

            register(run)
            return run

        return decorator


app = CommandApp(
    name="vidnet",
    help="Video action recognition with a fast SQLite frame store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Video action recognition with a fast SQLite frame store."""
