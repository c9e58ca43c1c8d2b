"""Plumbing shared by the CLI commands: error reporting, settings, sessions, output."""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.queries import parse_campaign_id
from mailer.core.errors import MailerError
from mailer.core.settings import Settings, get_settings
from mailer.core.terminal import printable

P = ParamSpec("P")
R = TypeVar("R")


class UntrustedTextConsole(Console):
    """A console for text that is not ours — campaign names, notes a stranger's complaint
    wrote, SMTP replies, addresses: no Rich markup is read (``[/x]`` is printed as is, never
    a ``MarkupError``), and terminal control characters are shown escaped (``\\x1b``),
    never sent to the operator's terminal. Every string printed or put in a table passes
    through ``render_str``, so this is the one place that escapes."""

    def render_str(self, text: str, **options: Any) -> Text:
        options.update(markup=False, emoji=False, highlight=False)
        return super().render_str(printable(text), **options)


# Wide when piped, so ids and timestamps are not cut in logs and scripts.
console = UntrustedTextConsole(
    width=None if sys.stdout.isatty() else 200, markup=False, emoji=False, highlight=False
)


def fail(lines: list[str] | str, code: int = 2) -> typer.Exit:
    """Print each line as an ``error:`` line on stderr; return the Exit to raise."""
    for line in [lines] if isinstance(lines, str) else lines:
        print(f"error: {printable(line)}", file=sys.stderr)
    return typer.Exit(code)


def warn(line: str) -> None:
    print(f"warning: {printable(line)}", file=sys.stderr)


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


CampaignArg = Annotated[str, typer.Argument(help="The campaign's UUID.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def campaign_id_arg(value: str) -> uuid.UUID:
    """The CAMPAIGN_ID argument as a UUID, or a one-line error naming it."""
    parsed = parse_campaign_id(value)
    if parsed is None:
        raise fail(f"CAMPAIGN_ID: {value!r} is not a campaign UUID")
    return parsed


def print_json(data: object) -> None:
    print(json.dumps(data))


def print_fields(fields: dict[str, object]) -> None:
    """Name/value rows without a header (nested dicts as ``outer.inner``)."""
    table = Table(show_header=False, box=None)
    for key, value in fields.items():
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                table.add_row(f"{key}.{inner_key}", _shown(inner_value))
        else:
            table.add_row(key, _shown(value))
    console.print(table)


def _shown(value: object) -> str:
    return "" if value is None else str(value)
