"""``mailer simulate``: forecast campaigns with the real workflow through skipped time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from mailer.cli.support import JsonOption, console, print_json, reports_errors, settings, warn
from mailer.core import event_loop
from mailer.core.settings import Settings
from mailer.simulate import report
from mailer.simulate.defaults import RealDefaults, read_defaults
from mailer.simulate.options import SettingsDefaults, SimulationOptions, build_options

app = typer.Typer()


Recipients = Annotated[int | None, typer.Option(help="Recipients per campaign.")]
CampaignOption = Annotated[
    str | None, typer.Option(help="Use this campaign's pending count and the current quota.")
]
Campaigns = Annotated[int, typer.Option(help="Campaigns of one creator started together.")]
Start = Annotated[str | None, typer.Option(help="ISO-8601 with offset; default now.")]
RatePerHour = Annotated[int | None, typer.Option(help="Default: MAILER_RATE_PER_HOUR.")]
DailyLimit = Annotated[int | None, typer.Option(help="Default: the account's.")]
Quota = Annotated[int | None, typer.Option(help="emails_available at the start.")]
QuotaRefill = Annotated[
    list[str] | None, typer.Option(help="N@ISO: the quota sync sees N from then (repeatable).")
]
WorkingHoursOption = Annotated[str | None, typer.Option(help="START-END, e.g. 9-18.")]
WorkingDaysOption = Annotated[
    str | None, typer.Option(help="e.g. mon-fri. Default: MAILER_WORKING_DAYS.")
]
HolidaysOption = Annotated[
    str | None, typer.Option(help="A country's holidays, e.g. RU. Default: MAILER_HOLIDAYS.")
]
HolidaysFileOption = Annotated[
    str | None,
    typer.Option(
        help="Extra dates: YYYY-MM-DD, or YYYY-MM-DD working. Default: MAILER_HOLIDAYS_FILE."
    ),
]
Timezone = Annotated[str | None, typer.Option(help="Default: MAILER_TIMEZONE.")]
Fail = Annotated[
    list[str] | None,
    typer.Option(
        help="PATTERN:CODE[ TEXT][@ISO/DURATION] (repeatable), e.g. "
        "'*@corp.example:450 4.7.1 Greylisted@2026-12-07T09:00+03:00/2h'."
    ),
]
Until = Annotated[str | None, typer.Option(help="Stop the simulation at this ISO time.")]
Domains = Annotated[
    str | None,
    typer.Option(
        help="Recipients' domains and shares, e.g. mail.ru=70,gmail.com=30 "
        "(default: the --campaign's own mix)."
    ),
]
Zones = Annotated[
    str | None,
    typer.Option(
        help="Recipients' own time zones and shares, e.g. Asia/Vladivostok=1,Europe/Moscow=1: "
        "each recipient's working hours in their zone (MAILER_RECIPIENT_TIMEZONES=on)."
    ),
]
DomainRatePerMinute = Annotated[
    str | None, typer.Option(help="Default: MAILER_DOMAIN_RATE_PER_MINUTE.")
]


@app.command()
@reports_errors
def simulate(
    recipients: Recipients = None,
    campaign: CampaignOption = None,
    campaigns: Campaigns = 1,
    start: Start = None,
    rate_per_hour: RatePerHour = None,
    daily_limit: DailyLimit = None,
    quota: Quota = None,
    quota_refill: QuotaRefill = None,
    working_hours: WorkingHoursOption = None,
    working_days: WorkingDaysOption = None,
    holidays: HolidaysOption = None,
    holidays_file: HolidaysFileOption = None,
    timezone: Timezone = None,
    fail: Fail = None,
    until: Until = None,
    domains: Domains = None,
    domain_rate_per_minute: DomainRatePerMinute = None,
    zones: Zones = None,
    as_json: JsonOption = False,
) -> None:
    """Forecast campaigns: the real workflow and activities through skipped time."""
    current = settings()
    real = read_defaults(current, campaign)
    if real.problem:
        warn(f"{real.problem}; the account's daily limit defaults to none")
    options = build_options(
        recipients=recipients,
        campaign=campaign,
        campaigns=campaigns,
        start=start or _scheduled_start(real),
        now=datetime.now(ZoneInfo(current.timezone)),
        rate_per_hour=rate_per_hour,
        daily_limit=daily_limit,
        quota=quota,
        refills=quota_refill or [],
        working_hours=working_hours,
        timezone=timezone,
        fails=fail or [],
        until=until,
        defaults=_defaults(current, real),
        domains=domains,
        domain_rate_per_minute=domain_rate_per_minute,
        working_days=working_days,
        holidays=holidays,
        holidays_file=holidays_file,
        zones=zones,
    )
    _forecast(options, current, as_json=as_json)


def _forecast(options: SimulationOptions, current: Settings, *, as_json: bool) -> None:
    """Run the simulation and print its forecast (a table and a line, or JSON)."""
    if not as_json:
        console.print(_intro(options))
    from mailer.simulate.servers import ThrowawayServers  # migrations: not for every command

    # PostgreSQL and Redis start now, in the background, while the runner loads.
    with ThrowawayServers() as servers:
        # Imported here: it brings the worker and Temporal's test server, which no other
        # command needs (every `mailer` command would pay for them at start).
        from mailer.simulate.runner import run

        raw = event_loop.run(run(options, current, servers), current.event_loop)
    forecast = report.build_forecast(
        raw, started_at=options.start, timezone=options.timezone, recipients=options.recipients
    )
    if as_json:
        print_json(forecast.to_json())
        return
    console.print(_daily_table(forecast))
    if any(d["waited"] or d["pending"] for d in forecast.domains):
        console.print(_domain_table(forecast))
    if forecast.zones:
        console.print(_zone_table(forecast))
    console.print(report.summary_line(forecast))


def _defaults(current: Settings, real: RealDefaults) -> SettingsDefaults:
    """What an option not given stands for: the settings and the real database."""
    return SettingsDefaults(
        timezone=current.timezone,
        working_hours=(current.working_hours_start, current.working_hours_end),
        rate_per_hour=current.rate_per_hour,
        daily_limit=real.daily_limit or 0,
        quota=real.quota,
        pending=real.pending,
        domains=real.domains or SettingsDefaults.domains,
        domain_rate_per_minute=current.domain_rate_per_minute,
        working_days=current.working_days,
        holidays=current.holidays,
        holidays_file=current.holidays_file,
        zones=real.zones,
    )


def _scheduled_start(real: RealDefaults) -> str | None:
    """A --campaign's scheduled start, if it has one ahead: the forecast starts there."""
    if real.scheduled_for is None or real.scheduled_for <= datetime.now(UTC):
        return None
    return real.scheduled_for.isoformat()


def _intro(options: SimulationOptions) -> str:
    start_hour, end_hour = options.working_hours
    return (
        f"Simulating {options.campaigns} × {options.recipients} recipients from "
        f"{options.start.isoformat()}: {options.rate_per_hour}/hour, "
        f"{start_hour:02d}:00–{end_hour:02d}:00 {options.timezone}{_days(options)}, daily limit "
        f"{options.daily_limit or 'none'}; "
        + "; ".join([*options.notes, _mix(options)])
        + _zones(options)
    )


def _days(options: SimulationOptions) -> str:
    """`` mon-fri, RU holidays`` (nothing for the seed's every day)."""
    parts = [] if options.working_days == "mon-sun" else [options.working_days]
    if options.holidays:
        parts.append(f"{options.holidays} holidays")
    if options.holidays_file is not None:
        parts.append(f"dates from {options.holidays_file}")
    return (" " + ", ".join(parts)) if parts else ""


def _mix(options: SimulationOptions) -> str:
    total = sum(weight for _, weight in options.domains)
    shares = ", ".join(f"{d} {100 * w / total:.0f}%" for d, w in options.domains[:6])
    more = f" and {len(options.domains) - 6} more" if len(options.domains) > 6 else ""
    pacing = options.domain_rate_per_minute or "none"
    return f"domains {shares}{more}; per-domain pacing: {pacing}"


def _zones(options: SimulationOptions) -> str:
    """``; recipients' zones: Asia/Vladivostok 33%, …`` (nothing for one zone)."""
    if not options.zones:
        return ""
    total = sum(weight for _, weight in options.zones)
    shares = ", ".join(f"{z} {100 * w / total:.0f}%" for z, w in options.zones)
    return f"; recipients' zones (each their own hours): {shares}"


def _zone_table(forecast: report.Forecast) -> Table:
    """Per recipients' zone: the first and last send in that zone's own local time."""
    table = Table("zone", "sent", "pending", "first sent (local)", "last sent (local)")
    for z in forecast.zones:
        first, last = z["first_sent_at"], z["last_sent_at"]
        table.add_row(
            Text(z["zone"]),
            str(z["sent"]),
            str(z["pending"]),
            datetime.fromisoformat(first).strftime("%a %d %b %H:%M") if first else "—",
            datetime.fromisoformat(last).strftime("%a %d %b %H:%M") if last else "—",
        )
    return table


def _domain_table(forecast: report.Forecast) -> Table:
    """Per domain, when some recipients waited on a 4xx or still wait: the rest finished
    while they did."""
    table = Table("domain", "sent", "failed", "pending", "waited (4xx)", "last sent")
    for d in forecast.domains:
        last = d["last_sent_at"]
        table.add_row(
            Text(d["domain"]),
            str(d["sent"]),
            str(d["failed"]),
            str(d["pending"]),
            str(d["waited"]),
            datetime.fromisoformat(last).strftime("%a %H:%M") if last else "—",
        )
    return table


def _daily_table(forecast: report.Forecast) -> Table:
    table = Table("day", "sent", "failed", "deferrals")
    for day, sent, failed, notes in report.daily_rows(forecast):
        table.add_row(day, str(sent), str(failed), notes)
    return table
