"""``mailer suppress``: the addresses mailer never writes to again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.support import (
    JsonOption,
    console,
    db_session,
    fail,
    print_json,
    reports_errors,
    settings,
)
from mailer.core.jsonable import jsonable
from mailer.operations import suppression
from workflows.states import SuppressionReason

app = typer.Typer(
    help="The suppression list: unsubscribed, hard-bounced, complained, or added by hand.",
    no_args_is_help=True,
)

ReasonOption = Annotated[str, typer.Option(help="unsubscribed, hard_bounce, complaint or manual.")]


def _reason(value: str) -> SuppressionReason:
    try:
        return SuppressionReason(value)
    except ValueError:
        allowed = ", ".join(reason.value for reason in SuppressionReason)
        raise fail(f"--reason: {value!r} is not one of {allowed}") from None


@app.command("add")
@reports_errors
def suppress_add(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to suppress.")],
    reason: ReasonOption = "manual",
    note: Annotated[str, typer.Option(help="Why (kept with the entry).")] = "",
) -> None:
    """Suppress addresses: no campaign writes to them again (pending recipients included)."""
    chosen = _reason(reason)
    checked = [suppression.normalized(a, "ADDRESS") for a in addresses]
    with db_session() as session:
        added = suppression.add(session, checked, chosen, note=note)
    print(f"suppressed {added} new address(es) ({len(checked) - added} already listed)")


@app.command("remove")
@reports_errors
def suppress_remove(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to write to again.")],
) -> None:
    """Take addresses off the list (say, a mailbox that exists again)."""
    checked = [suppression.normalized(a, "ADDRESS") for a in addresses]
    with db_session() as session:
        removed = suppression.remove(session, checked)
    print(f"removed {removed} address(es) ({len(checked) - removed} were not listed)")


@app.command("list")
@reports_errors
def suppress_list(
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The suppressed addresses, oldest first."""
    chosen = _reason(reason) if reason is not None else None
    with db_session() as session:
        rows = suppression.suppressed_addresses(session, chosen)
    if as_json:
        print_json([jsonable(row, settings().timezone) for row in rows])
        return
    for row in rows:
        console.print(f"{row.email}\t{row.reason}\t{row.campaign_id or '-'}\t{row.note}")
    console.print(f"{len(rows)} address(es)")


@app.command("import")
@reports_errors
def suppress_import(
    path: Annotated[Path, typer.Argument(help="CSV with an 'email' column.")],
    reason: ReasonOption = "manual",
) -> None:
    """Suppress every address of a CSV (all checked first: one bad line writes nothing)."""
    chosen = _reason(reason)
    addresses = suppression.read_csv(path)
    with db_session() as session:
        added = suppression.add(session, addresses, chosen, note=f"imported from {path.name}")
    print(f"suppressed {added} new address(es) of {len(addresses)} in {path}")


@app.command("export")
@reports_errors
def suppress_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """The whole list as CSV (email, reason, campaign_id, note, created_at)."""
    with db_session() as session:
        text = suppression.to_csv(suppression.suppressed_addresses(session))
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {text.count(chr(10)) - 1} address(es) to {output}")
