"""``mailer db``: the database schema."""

from __future__ import annotations

import typer
from sqlalchemy import create_engine

from db.adoption import SchemaState, adopt, schema_state
from db.migrate import upgrade
from mailer.cli.support import console, fail, reports_errors, settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Migrate the database named by MAILER_DATABASE_URL to the latest schema."""
    url = settings().sqlalchemy_url
    engine = create_engine(url)
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    if state == SchemaState.UNADOPTED:
        raise fail(
            "the CRM's tables are here but mailer has not adopted them: run `mailer db adopt` "
            "(it checks them and changes nothing if they do not fit)",
            code=2,
        )
    upgrade(url)
    console.print("database is at the latest schema")


@app.command("adopt")
@reports_errors
def db_adopt() -> None:
    """Take over a database whose seed tables the CRM made (Django): check every table and
    column mailer uses, then add mailer's columns, tables and trigger (docs/cutover.md)."""
    adoption = adopt(settings().sqlalchemy_url)
    if adoption.problems:
        raise fail([*adoption.problems, "nothing was changed"], code=1)
    if adoption.state == SchemaState.EMPTY:
        raise fail("no seed tables here: `mailer db upgrade` creates them", code=2)
    console.print("adopted: mailer's migrations are recorded and applied; the CRM's rows are kept")
