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

import errno
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from vidnet.errors import VidnetError

__all__ = ["app", "errors_to_exit_codes", "plain_reason"]

_PLAIN = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "name too long",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
}


def plain_reason(err: BaseException) -> str:
    """``<file>: <plain reason>`` for an I/O, SQLite or HDF5 failure (no exception class names)."""
    if isinstance(err, OSError):
        reason = _PLAIN.get(err.errno or 0) or (err.strerror or str(err)).lower()
        name = err.filename
        if err.filename2:
            name = f"{err.filename} -> {err.filename2}"
        return f"{name}: {reason}" if name else reason
    if isinstance(err, sqlite3.Error):
        text = str(err)
        reason = {"database or disk is full": "disk full", "attempt to write a readonly database": "read-only",
                  "file is not a database": "not a SQLite database"}.get(text, text)
        return f"SQLite database: {reason}"
    return str(err)


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
        _fail(plain_reason(err), 1)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code) from None


class _App(typer.Typer):
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


app = _App(
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
