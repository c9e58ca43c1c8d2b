"""The operator CLI (``mailer …``, or ``python starter.py …``): one module per command group.

Each module is a Typer sub-app; campaign and simulation commands stand at the top level
(``mailer start ID``), the others under their group's name (``mailer quota show``).
Every command starts by importing all of them, so what only one command needs (the
simulation's runner, the web server and its receiver) is imported inside that command
(``tests/cli/test_startup.py``).
"""

from __future__ import annotations

import sys

import typer

from mailer.cli import (
    account,
    campaigns,
    database,
    doctor,
    proof_email,
    quota,
    simulate,
    suppress,
    users,
    web,
)
from mailer.core.errors import ConfigError
from mailer.core.process_exit import exit_process

app = typer.Typer(
    help="mailer: email campaigns as durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(database.app, name="db")
app.add_typer(users.app, name="user")
app.add_typer(account.app, name="account")
app.add_typer(quota.app, name="quota")
app.add_typer(suppress.app, name="suppress")
app.add_typer(campaigns.app)
app.add_typer(simulate.app)
app.add_typer(proof_email.app)
app.add_typer(doctor.app)
app.add_typer(web.app)


def main() -> None:
    """The console entry point: runs a command, then exits with its code."""
    code: int
    try:
        app()
        code = 0
    except SystemExit as exc:  # how typer reports a command's exit code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    exit_process(code)
