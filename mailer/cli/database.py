"""``mailer db``: the database schema."""

from __future__ import annotations

import typer

from db.migrate import upgrade
from mailer.cli.support import console, reports_errors, settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Migrate the database named by MAILER_DATABASE_URL to the latest schema."""
    upgrade(settings().sqlalchemy_url)
    console.print("database is at the latest schema")
