"""Campaign commands: ``create``, ``start``, ``pause``, ``resume``, ``cancel``, ``status``,
``list`` and ``watch``."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from activities.campaign_runs import Live, live
from activities.ledger import limits_for
from activities.ratelimit import domain_usage_now
from db.models import GlobalMailAccount
from db.queries import (
    CampaignRow,
    WaitingDomain,
    campaign_list,
    campaign_status_view,
    get_account,
    pending_by_domain,
    pending_by_zone,
    waiting_by_domain,
)
from mailer.cli.support import (
    CampaignArg,
    JsonOption,
    campaign_id_arg,
    console,
    db_session,
    fail,
    print_fields,
    print_json,
    reports_errors,
    settings,
    warn,
)
from mailer.core.jsonable import jsonable
from mailer.core.start_times import parse_start_at
from mailer.core.ui_links import campaigns_query, list_link, workflow_link
from mailer.mail.pacing import DomainPacing
from mailer.operations import control
from mailer.operations.authoring.create import CampaignDraft, CreatedCampaign, create_campaign
from mailer.operations.watch import watch_campaign
from workflows.campaign import workflow_id_for
from workflows.contracts import Progress
from workflows.gates import working_hours
from workflows.states import ACTIVE_CAMPAIGN_STATUSES, CampaignStatus, Signal, WorkflowState
from workflows.working_hours import in_zone, is_working_time, next_working_start

app = typer.Typer()

MAX_LISTED_WARNINGS = 20


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
    as_json: JsonOption = False,
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
        recipient_timezones=settings().recipient_timezones,
    )
    with db_session() as session:
        created = create_campaign(
            session,
            draft,
            max_recipients=settings().max_campaign_recipients,
            max_file_mb=settings().max_recipients_file_mb,
        )
    _warn_about(created)
    if as_json:
        print_json(
            {
                "campaign_id": str(created.campaign_id),
                "recipients": created.recipients,
                "skipped_invalid": created.skipped_invalid,
                "merged_duplicates": created.merged_duplicates,
                "skipped_suppressed": created.skipped_suppressed,
            }
        )
    else:
        print(created.campaign_id)


def _warn_about(created: CreatedCampaign) -> None:
    for line in created.warnings[:MAX_LISTED_WARNINGS]:
        warn(line)
    if len(created.warnings) > MAX_LISTED_WARNINGS:
        warn(f"… and {len(created.warnings) - MAX_LISTED_WARNINGS} more duplicates merged")
    if created.skipped_invalid:
        warn(f"skipped {created.skipped_invalid} invalid addresses (--skip-invalid)")
    if created.skipped_suppressed:
        reasons = ", ".join(f"{n} {why}" for why, n in created.skipped_suppressed.items())
        total = sum(created.skipped_suppressed.values())
        warn(f"skipped {total} suppressed addresses ({reasons}; see `mailer suppress list`)")


@app.command()
@reports_errors
def status(campaign_id: CampaignArg, as_json: JsonOption = False) -> None:
    """Show a campaign's status, deferral and counts (live from its workflow when running)."""
    parsed = campaign_id_arg(campaign_id)
    with db_session() as session:
        view = campaign_status_view(session, parsed)
    if view is None:
        raise fail(f"CAMPAIGN_ID: no campaign {campaign_id}", 1)
    data: dict[str, object] = jsonable(view, settings().timezone)
    if view.status in ACTIVE_CAMPAIGN_STATUSES or view.scheduled_for is not None:
        try:
            current = asyncio.run(_live(parsed))
        except control.ControlError as exc:
            warn(f"live state unavailable: {exc}")
            current = None
        if current is not None and current.progress is not None:
            data["live"] = jsonable(current.progress, settings().timezone)
    pacing = settings().domain_pacing
    with db_session() as session:
        if pacing:
            data["pacing"] = _pacing(pacing, pending_by_domain(session, parsed))
        waiting = waiting_by_domain(session, parsed, datetime.now(UTC))
        if settings().recipient_timezones:
            data["zones"] = _zones(pending_by_zone(session, parsed), get_account(session))
    if waiting:
        data["waiting"] = _waiting(waiting)
    if as_json:
        print_json(data)
    else:
        print_fields(data)


def _pacing(pacing: DomainPacing, pending: dict[str, int]) -> dict[str, str]:
    """Per domain group: this campaign's pending, the rate, and this minute's use."""
    used = domain_usage_now(settings().redis_connection_url, pacing, datetime.now(UTC))
    shown = {}
    for group in pacing.groups:
        waiting = sum(n for domain, n in pending.items() if domain in group.domains)
        now = "?" if used is None else str(used.get(group.name, 0))
        shown[group.name] = f"{waiting} pending, {group.per_minute}/min ({now} used this minute)"
    return shown


def _zones(pending: dict[str, int], account: GlobalMailAccount | None) -> dict[str, str]:
    """Per recipients' zone: its pending count, and whether its working hours hold now or
    when they open next (in that zone, and in MAILER_TIMEZONE)."""
    now = datetime.now(UTC)
    hours = working_hours(limits_for(settings(), account, now))
    by_zone: Counter[str] = Counter()
    for stored, count in pending.items():  # '' and a name that is not a zone: the default
        by_zone[in_zone(hours, stored).timezone] += count
    shown = {}
    for name, count in sorted(by_zone.items()):
        local = in_zone(hours, name)
        if is_working_time(now, local):
            when = "open now"
        else:
            opens = next_working_start(now, local)
            here = opens.astimezone(hours.zone).isoformat(timespec="minutes")
            when = f"opens {opens.isoformat(timespec='minutes')} ({here} {hours.timezone})"
        shown[local.timezone] = f"{count} pending, {when}"
    return shown


def _waiting(domains: list[WaitingDomain]) -> dict[str, str]:
    """Per domain: recipients waiting for their own retry (a 4xx about them or their
    domain) while the rest of the campaign goes on."""
    zone = ZoneInfo(settings().timezone)
    return {
        d.domain: (
            f"{d.waiting} wait their retry (4xx), next at "
            f"{d.next_try.astimezone(zone).isoformat(timespec='minutes')}, "
            f"up to {d.most_attempts} tries so far"
        )
        for d in domains
    }


async def _live(campaign_id: uuid.UUID) -> Live | None:
    client = await control.connect_or_explain(settings())
    return await live(client, campaign_id)


@app.command()
@reports_errors
def start(
    campaign_id: CampaignArg,
    at: Annotated[
        str | None,
        typer.Option(
            help="Start at this ISO time instead of now (MAILER_TIMEZONE if it has no "
            "offset); again on a scheduled campaign to move its start."
        ),
    ] = None,
) -> None:
    """Start sending a ready campaign now or at --at (its workflow checks limits and
    throttles first); on a scheduled campaign, move its start (to now without --at)."""
    parsed = campaign_id_arg(campaign_id)
    start_at = None
    if at is not None:
        try:
            start_at = parse_start_at(at, settings().timezone)
        except ValueError as exc:
            raise fail(f"--at: {exc}", 2) from None
    progress = asyncio.run(control.start(settings(), parsed, start_at))
    if progress.scheduled_for is not None:
        when = progress.scheduled_for.astimezone(ZoneInfo(settings().timezone))
        console.print(f"campaign {parsed} scheduled: starts at {when.isoformat()}")
        if progress.state == WorkflowState.PAUSED:
            console.print("it is paused: nothing is sent at that time until it is resumed")
    else:
        console.print(f"campaign {parsed} started: {_describe(progress)}")
    link = workflow_link(
        settings().temporal_ui_url, settings().temporal_namespace, workflow_id_for(str(parsed))
    )
    console.print(f"Web UI: {link}")


def _describe(progress: Progress) -> str:
    text: str = progress.state
    if progress.defer_reason:
        text += f" ({progress.defer_reason}"
        if progress.deferred_until:
            until = progress.deferred_until.astimezone(ZoneInfo(settings().timezone))
            text += f" until {until.isoformat()}"
        text += ")"
    if progress.pause_reason:
        text += f" — {progress.pause_reason}"
    return f"{text}; {progress.sent} sent, {progress.failed} failed, {progress.pending} pending"


def _send_signal(campaign_id: str, signal: Signal) -> None:
    parsed = campaign_id_arg(campaign_id)
    state = asyncio.run(control.signal(settings(), parsed, signal))
    console.print(f"campaign {parsed}: {state}")


@app.command()
@reports_errors
def pause(campaign_id: CampaignArg) -> None:
    """Pause a campaign (takes effect within about one message)."""
    _send_signal(campaign_id, Signal.PAUSE)


@app.command()
@reports_errors
def resume(campaign_id: CampaignArg) -> None:
    """Resume a paused or deferred campaign; clears the deferral and errors."""
    _send_signal(campaign_id, Signal.RESUME)


@app.command()
@reports_errors
def cancel(campaign_id: CampaignArg) -> None:
    """Cancel a campaign for good; pending recipients stay pending."""
    _send_signal(campaign_id, Signal.CANCEL)


@app.command("list")
@reports_errors
def list_campaigns(
    reason: Annotated[
        str | None, typer.Option(help="Only campaigns deferred or paused for this reason.")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include finished campaigns.")] = False,
    as_json: JsonOption = False,
    ui: Annotated[
        bool, typer.Option("--ui", help="Print the Web UI's list of the same campaigns.")
    ] = False,
) -> None:
    """Campaigns with status, defer reason and counts (newest first)."""
    if ui:
        query = campaigns_query(reason, include_finished=show_all)
        print(list_link(settings().temporal_ui_url, settings().temporal_namespace, query))
        return
    with db_session() as session:
        rows = campaign_list(session, reason=reason, include_finished=show_all)
    if as_json:
        print_json([jsonable(row, settings().timezone) for row in rows])
    else:
        console.print(_campaign_table(rows, ZoneInfo(settings().timezone)))


def _campaign_table(rows: list[CampaignRow], zone: ZoneInfo) -> Table:
    """Times in MAILER_TIMEZONE, as everywhere operators read them."""
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
            _status_cell(row),
            row.queue_status or "",
            row.defer_reason,
            (
                row.deferred_until.astimezone(zone).isoformat(timespec="minutes")
                if row.deferred_until
                else ""
            ),
            str(row.sent),
            str(row.failed),
            str(row.pending),
        )
    return table


def _status_cell(row: CampaignRow) -> str:
    """The table's status; a scheduled start says so (its time is in deferred_until)."""
    if row.scheduled_for is None:
        return row.status
    return "scheduled" if row.status == CampaignStatus.READY else f"{row.status} (scheduled)"


@app.command()
@reports_errors
def watch(
    campaign_id: CampaignArg,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """A live progress bar until the campaign finishes (Ctrl-C stops watching, not sending)."""
    parsed = campaign_id_arg(campaign_id)
    try:
        final = asyncio.run(watch_campaign(settings(), parsed, interval))
    except KeyboardInterrupt:
        console.print("stopped watching; the campaign goes on")
        return
    console.print(f"campaign {parsed}: {final}")
