"""The operator CLI (``python starter.py …`` or ``mailer …``)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from db.queries import campaign_list, campaign_status, parse_campaign_id, quota_row
from mailer import control
from mailer.accounts import AccountChanges, add_user, describe_account, get_account, set_account
from mailer.authoring.create import CampaignDraft, create_campaign
from mailer.cli_support import (
    console,
    db_session,
    exit_process,
    fail,
    reports_errors,
    settings,
    warn,
)
from mailer.watch import watch_campaign
from workflows.campaign import workflow_id_for
from workflows.contracts import Progress

app = typer.Typer(
    help="mailer: email campaigns as durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="CRM users (campaign creators).", no_args_is_help=True)
account_app = typer.Typer(help="The global SMTP account and its limits.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(account_app, name="account")
quota_app = typer.Typer(help="The smtp.bz quota (mailer_smtpbzquota).", no_args_is_help=True)
app.add_typer(quota_app, name="quota")


@quota_app.command("show")
@reports_errors
def quota_show() -> None:
    """The quota as mailer sees it: available, limit, last sync and its error."""
    with db_session() as session:
        row = quota_row(session)
    table = Table(show_header=False, box=None)
    for key, value in row.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


@quota_app.command("sync")
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


@db_app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Migrate the database named by MAILER_DATABASE_URL to the latest schema."""
    from db.migrate import upgrade

    upgrade(settings().sqlalchemy_url)
    console.print("database is at the latest schema")


@user_app.command("add")
@reports_errors
def user_add(
    username: str,
    email: Annotated[str, typer.Option(help="The user's own address (informational).")] = "",
) -> None:
    """Add a user and print its id."""
    with db_session() as session:
        user = add_user(session, username, email)
        user_id = user.id
    print(user_id)


@account_app.command("set")
@reports_errors
def account_set(
    smtp_host: Annotated[str | None, typer.Option()] = None,
    smtp_port: Annotated[int | None, typer.Option()] = None,
    smtp_username: Annotated[str | None, typer.Option()] = None,
    smtp_password: Annotated[str | None, typer.Option()] = None,
    smtp_tls: Annotated[str | None, typer.Option(help="none, starttls or tls")] = None,
    from_email: Annotated[str | None, typer.Option()] = None,
    from_name: Annotated[str | None, typer.Option()] = None,
    daily_limit: Annotated[
        int | None, typer.Option(help="Emails per user per day; 0 = no limit.")
    ] = None,
    smtp_bz_api_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create or change the global mail account (only the options given change)."""
    changes = AccountChanges(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        smtp_tls=smtp_tls,
        from_email=from_email,
        from_name=from_name,
        per_user_daily_limit=daily_limit,
        smtp_bz_api_key=smtp_bz_api_key,
    )
    with db_session() as session:
        shown = describe_account(set_account(session, changes))
    _print_account(shown)


@account_app.command("show")
@reports_errors
def account_show() -> None:
    """Show the global mail account, secrets masked."""
    with db_session() as session:
        account = get_account(session)
        if account is None:
            raise fail("no account yet: create it with `mailer account set …`", 1)
        shown = describe_account(account)
    _print_account(shown)


def _print_account(shown: dict[str, object]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in shown.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
@reports_errors
def create(
    name: Annotated[str, typer.Option(help="Campaign name.")],
    subject: Annotated[str, typer.Option(help="Subject (a Jinja2 template).")],
    recipients: Annotated[Path, typer.Option(help="CSV with an 'email' column.")],
    created_by: Annotated[str, typer.Option(help="Username (or id) of the creator.")],
    html: Annotated[Path | None, typer.Option(help="HTML body template file.")] = None,
    text: Annotated[Path | None, typer.Option(help="Plain-text body template file.")] = None,
    encoding: Annotated[str, typer.Option(help="The CSV's encoding.")] = "utf-8",
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Drop invalid addresses.")
    ] = False,
    from_email: Annotated[str, typer.Option(help="Sender (default: the account's).")] = "",
    from_name: Annotated[str, typer.Option(help="Sender name (default: the account's).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a campaign from templates and a recipients CSV; prints its id."""
    draft = CampaignDraft(
        name=name,
        subject=subject,
        recipients_path=recipients,
        created_by=created_by,
        html_path=html,
        text_path=text,
        encoding=encoding,
        skip_invalid=skip_invalid,
        from_email=from_email,
        from_name=from_name,
    )
    with db_session() as session:
        created = create_campaign(session, draft, max_recipients=settings().max_campaign_recipients)
    for line in created.warnings[:20]:
        warn(line)
    if len(created.warnings) > 20:
        warn(f"… and {len(created.warnings) - 20} more duplicates merged")
    if created.skipped_invalid:
        warn(f"skipped {created.skipped_invalid} invalid addresses (--skip-invalid)")
    if as_json:
        print(
            json.dumps(
                {
                    "campaign_id": str(created.campaign_id),
                    "recipients": created.recipients,
                    "skipped_invalid": created.skipped_invalid,
                    "merged_duplicates": created.merged_duplicates,
                }
            )
        )
    else:
        print(created.campaign_id)


def _campaign_id(value: str) -> uuid.UUID:
    parsed = parse_campaign_id(value)
    if parsed is None:
        raise fail(f"CAMPAIGN_ID: {value!r} is not a campaign UUID")
    return parsed


CampaignArg = Annotated[str, typer.Argument(help="The campaign's UUID.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command()
@reports_errors
def status(campaign_id: CampaignArg, as_json: JsonOption = False) -> None:
    """Show a campaign's status, deferral and counts (live from its workflow when running)."""
    parsed = _campaign_id(campaign_id)
    with db_session() as session:
        view = campaign_status(session, parsed)
    if view is None:
        raise fail(f"CAMPAIGN_ID: no campaign {campaign_id}", 1)
    data: dict[str, object] = view.to_json()
    if view.status in ("sending", "paused"):
        try:
            current = asyncio.run(_live(parsed))
        except control.ControlError as exc:
            warn(f"live state unavailable: {exc}")
            current = None
        if current is not None and current.progress is not None:
            data["live"] = control.progress_json(current.progress)
    if as_json:
        print(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if isinstance(value, dict):
            for live_key, live_value in value.items():
                table.add_row(f"live.{live_key}", "" if live_value is None else str(live_value))
        else:
            table.add_row(key, "" if value is None else str(value))
    console.print(table)


async def _live(campaign_id: uuid.UUID) -> control.Live | None:
    client = await control.connect(settings())
    return await control.live(client, campaign_id)


@app.command()
@reports_errors
def start(campaign_id: CampaignArg) -> None:
    """Start sending a ready campaign (its workflow checks limits and throttles first)."""
    parsed = _campaign_id(campaign_id)
    progress = asyncio.run(control.start(settings(), parsed))
    console.print(f"campaign {parsed} started: {_describe(progress)}")
    console.print(
        f"Web UI: {settings().temporal_ui_url}/namespaces/"
        f"{settings().temporal_namespace}/workflows/{workflow_id_for(str(parsed))}"
    )


def _describe(progress: Progress) -> str:
    text = progress.state
    if progress.defer_reason:
        text += f" ({progress.defer_reason}"
        if progress.deferred_until:
            text += f" until {progress.deferred_until.isoformat()}"
        text += ")"
    if progress.pause_reason:
        text += f" — {progress.pause_reason}"
    return f"{text}; {progress.sent} sent, {progress.failed} failed, {progress.pending} pending"


def _signal_command(name: str, help_text: str) -> None:
    @app.command(name=name, help=help_text)
    @reports_errors
    def command(campaign_id: CampaignArg) -> None:
        parsed = _campaign_id(campaign_id)
        state = asyncio.run(control.signal(settings(), parsed, name))
        console.print(f"campaign {parsed}: {state}")


_signal_command("pause", "Pause a campaign (takes effect within about one message).")
_signal_command("resume", "Resume a paused or deferred campaign; clears the deferral and errors.")
_signal_command("cancel", "Cancel a campaign for good; pending recipients stay pending.")


@app.command("list")
@reports_errors
def list_campaigns(
    reason: Annotated[
        str | None, typer.Option(help="Only campaigns deferred or paused for this reason.")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include finished campaigns.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Campaigns with status, defer reason and counts (newest first)."""
    with db_session() as session:
        rows = campaign_list(session, reason=reason, include_finished=show_all)
    if as_json:
        print(json.dumps([row.to_json() for row in rows]))
        return
    table = Table(
        "campaign",
        "name",
        "status",
        "queue",
        "defer_reason",
        "deferred_until",
        "sent",
        "failed",
        "pending",
    )
    for row in rows:
        table.add_row(
            row.campaign_id,
            row.name,
            row.status,
            row.queue_status or "",
            row.defer_reason,
            row.deferred_until.isoformat(timespec="minutes") if row.deferred_until else "",
            str(row.sent),
            str(row.failed),
            str(row.pending),
        )
    console.print(table)


@app.command()
@reports_errors
def watch(
    campaign_id: CampaignArg,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """A live progress bar until the campaign finishes (Ctrl-C stops watching, not sending)."""
    parsed = _campaign_id(campaign_id)
    try:
        final = asyncio.run(watch_campaign(settings(), parsed, interval))
    except KeyboardInterrupt:
        console.print("stopped watching; the campaign goes on")
        return
    console.print(f"campaign {parsed}: {final}")


@app.command()
@reports_errors
def simulate(
    recipients: Annotated[int | None, typer.Option(help="Recipients per campaign.")] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Use this campaign's pending count and the current quota.")
    ] = None,
    campaigns: Annotated[int, typer.Option(help="Campaigns of one creator started together.")] = 1,
    start: Annotated[str | None, typer.Option(help="ISO-8601 with offset; default now.")] = None,
    rate_per_hour: Annotated[
        int | None, typer.Option(help="Default: MAILER_RATE_PER_HOUR.")
    ] = None,
    daily_limit: Annotated[int | None, typer.Option(help="Default: the account's.")] = None,
    quota: Annotated[int | None, typer.Option(help="emails_available at the start.")] = None,
    quota_refill: Annotated[
        list[str] | None, typer.Option(help="N@ISO: the quota sync sees N from then (repeatable).")
    ] = None,
    working_hours: Annotated[str | None, typer.Option(help="START-END, e.g. 9-18.")] = None,
    timezone: Annotated[str | None, typer.Option(help="Default: MAILER_TIMEZONE.")] = None,
    fail: Annotated[
        list[str] | None,
        typer.Option(help="PATTERN:CODE or PATTERN:CODE@ISO/DURATION (repeatable)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop the simulation at this ISO time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Forecast campaigns: the real workflow and activities through skipped time."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from mailer.simulate import report
    from mailer.simulate.defaults import read_defaults
    from mailer.simulate.options import SettingsDefaults, build_options
    from mailer.simulate.runner import run

    current = settings()
    real = read_defaults(current, campaign)
    if real.problem:
        warn(f"{real.problem}; the account's daily limit defaults to none")
    options = build_options(
        recipients=recipients,
        campaign=campaign,
        campaigns=campaigns,
        start=start,
        now=datetime.now(ZoneInfo(current.timezone)),
        rate_per_hour=rate_per_hour,
        daily_limit=daily_limit,
        quota=quota,
        refills=quota_refill or [],
        working_hours=working_hours,
        timezone=timezone,
        fails=fail or [],
        until=until,
        defaults=SettingsDefaults(
            timezone=current.timezone,
            working_hours=(current.working_hours_start, current.working_hours_end),
            rate_per_hour=current.rate_per_hour,
            daily_limit=real.daily_limit or 0,
            quota=real.quota,
            pending=real.pending,
        ),
    )
    if not as_json:
        start_hour, end_hour = options.working_hours
        console.print(
            f"Simulating {options.campaigns} × {options.recipients} recipients from "
            f"{options.start.isoformat()}: {options.rate_per_hour}/hour, "
            f"{start_hour:02d}:00–{end_hour:02d}:00 {options.timezone}, daily limit "
            f"{options.daily_limit or 'none'}; " + "; ".join(options.notes)
        )
    raw = asyncio.run(run(options, current))
    forecast = report.build_forecast(
        raw, started_at=options.start, timezone=options.timezone, recipients=options.recipients
    )
    if as_json:
        print(json.dumps(forecast.to_json()))
        return
    table = Table("day", "sent", "failed", "deferrals")
    for day, sent, failed, notes in report.daily_rows(forecast):
        table.add_row(day, str(sent), str(failed), notes)
    console.print(table)
    console.print(report.summary_line(forecast))


def main() -> None:
    """The console entry point: runs a command, then exits with its code."""
    from mailer.errors import ConfigError

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


if __name__ == "__main__":
    main()
