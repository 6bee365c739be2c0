"""The Typer application object; command modules attach their commands to it.

Every command runs inside the one error boundary, `errors_to_exit_codes`:

* a :class:`~vidnet.errors.VidnetError` becomes one line on stderr (``error: <file>: <reason>``) and the
  error's exit code (1; 2 for a usage error);
* an ``OSError`` (read-only or full disk, a file where a folder should be, permissions; h5py's file errors
  are ``OSError`` too) and a ``sqlite3`` error become ``error: <file>: <plain reason>``, exit 1;
* Ctrl-C exits with 130, whatever the command;
* ``vidnet --debug <command>`` (or ``VIDNET_DEBUG=1``) lets the traceback through instead.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from vidnet.errors import VidnetError, plain_reason

__all__ = ["app", "errors_to_exit_codes"]

def _describe(err: OSError | sqlite3.Error) -> str:
    """``<file>: <plain reason>`` (SQLite names no file: its errors are wrapped with one where they happen)."""
    if isinstance(err, OSError) and err.filename:
        name = f"{err.filename} -> {err.filename2}" if err.filename2 else err.filename
        return f"{name}: {plain_reason(err)}"
    return f"SQLite database: {plain_reason(err)}" if isinstance(err, sqlite3.Error) else plain_reason(err)


_debug = os.environ.get("VIDNET_DEBUG", "") not in ("", "0")


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """The error boundary of every command (see the module docstring)."""
    if _debug:
        yield
        return
    try:
        yield
    except VidnetError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    except (OSError, sqlite3.Error) as err:  # h5py reports its file errors as OSError
        _fail(_describe(err), 1)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code) from None


class CommandApp(typer.Typer):
    """A Typer application whose commands report `VidnetError` as one line (see the module docstring)."""

    def command(self, *args, **kwargs) -> Callable:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def run(*a, **k):
                with errors_to_exit_codes():
                    return fn(*a, **k)

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
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """Video action recognition with a fast SQLite frame store."""
    global _debug
    if debug:
        _debug = True
