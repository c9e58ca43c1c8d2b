"""``mailer doctor``: the 60-second diagnosis (see :mod:`mailer.doctor`)."""

from __future__ import annotations

import asyncio

import typer

from mailer.cli.support import JsonOption, print_json, reports_errors, settings
from mailer.core.terminal import printable
from mailer.doctor import checks, probes, report

app = typer.Typer()


@app.command()
@reports_errors
def doctor(as_json: JsonOption = False) -> None:
    """Every part, the active campaigns, quota, rate window, schedules and the six alerts,
    each OK / WARN / CRIT with the action. Exit 0 all OK, 1 any WARN, 2 any CRIT."""
    facts = asyncio.run(probes.look(settings()))
    found = checks.evaluate(facts)
    if as_json:
        print_json(report.as_json(facts, found))
    else:
        print(printable(report.as_text(facts, found)))
    raise typer.Exit(checks.exit_code(found))
