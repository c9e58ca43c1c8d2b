"""Plumbing shared by the CLI commands: error reporting, settings, database sessions."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.engine import session_scope
from mailer.errors import MailerError
from mailer.settings import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")

# Wide when piped, so ids and timestamps are not cut in logs and scripts.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def fail(lines: list[str] | str, code: int = 2) -> typer.Exit:
    """Print each line as an ``error:`` line on stderr; return the Exit to raise."""
    for line in [lines] if isinstance(lines, str) else lines:
        print(f"error: {line}", file=sys.stderr)
    return typer.Exit(code)


def exit_process(code: int) -> None:
    """Flush and end the process without interpreter finalization.

    The Temporal client's native runtime can crash the interpreter while it finalizes
    ("PyGILState_Release … finalizing") after a command is done; every file and transaction
    is closed by then, so skipping finalization loses nothing and keeps exit codes honest.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn mailer's exceptions into one-line errors and a non-zero exit, not tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MailerError as exc:
            problems = getattr(exc, "problems", None) or str(exc).splitlines()
            raise fail(problems, exc.exit_code) from None
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise fail(
                f"cannot reach the database ({reason}); check MAILER_DATABASE_URL or run `make up`",
                1,
            ) from None

    return wrapper


def settings() -> Settings:
    return get_settings()


@contextmanager
def db_session() -> Iterator[Session]:
    with session_scope(settings().sqlalchemy_url) as session:
        yield session
