"""``mailer quota``: the smtp.bz quota as mailer sees it, and a sync on demand."""

from __future__ import annotations

import asyncio

import typer

from db.queries import quota_row
from mailer.cli.support import console, db_session, fail, print_fields, reports_errors, settings
from mailer.operations import control

app = typer.Typer(help="The smtp.bz quota (mailer_smtpbzquota).", no_args_is_help=True)


@app.command("show")
@reports_errors
def quota_show() -> None:
    """The quota as mailer sees it: available, limit, last sync and its error."""
    with db_session() as session:
        row = quota_row(session)
    print_fields(row)


@app.command("sync")
@reports_errors
def quota_sync() -> None:
    """Sync the quota from smtp.bz now and wake campaigns waiting for it."""
    result = asyncio.run(control.sync_quota(settings()))
    if result.error:
        raise fail(
            f"quota sync failed: {result.error} (emails_available stays {result.emails_available})",
            1,
        )
    console.print(
        f"quota synced: {result.emails_available} emails available; "
        f"woke {result.woken} campaigns deferred on quota_exhausted"
    )
