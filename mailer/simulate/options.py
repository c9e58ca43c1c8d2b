"""The simulation's options, parsed and checked; every error names its option."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.core.errors import InputError
from mailer.core.working_days import country_code, parse_working_days, read_dates_file
from mailer.mail.pacing import parse_domain_rates
from workflows.working_hours import is_zone

SMTP_CODE = re.compile(r"^[245]\d\d$")
FAIL_SPEC = re.compile(
    r"(?P<pattern>[^:]+):(?P<code>\d{3})(?: (?P<text>[^@]{1,200}))?(?:@(?P<window>.+))?"
)
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class FailRule:
    """Reply ``code`` to recipients matching ``pattern``; within [start, end) if windowed."""

    pattern: str
    code: int
    start: datetime | None = None
    end: datetime | None = None
    text: str = ""  # the reply after the code (default: the simulator's for 4xx or 5xx)

    def active(self, now: datetime) -> bool:
        if self.start is None or self.end is None:
            return True
        return self.start <= now < self.end


@dataclass(frozen=True)
class Refill:
    """From ``at`` on, the provider's quota sync reports ``available`` (less sends since)."""

    available: int
    at: datetime


@dataclass(frozen=True)
class SimulationOptions:
    recipients: int
    campaigns: int
    start: datetime
    rate_per_hour: int
    daily_limit: int
    quota: int
    working_hours: tuple[int, int]
    timezone: str
    refills: tuple[Refill, ...] = ()
    fail_rules: tuple[FailRule, ...] = ()
    until: datetime | None = None
    source_campaign: str | None = None
    notes: list[str] = field(default_factory=list)
    # Recipients' domains and their weights (interleaved), and the per-domain pacing.
    domains: tuple[tuple[str, int], ...] = (("simulation.invalid", 1),)
    domain_rate_per_minute: str = ""
    # The calendar: working weekdays ("mon-fri"), a country's holidays ("RU"), a dates file.
    working_days: str = "mon-sun"
    holidays: str = ""
    holidays_file: Path | None = None
    # Recipients' own time zones and their shares (interleaved): each recipient's working
    # hours hold in their zone (MAILER_RECIPIENT_TIMEZONES=on). Empty: one zone for all.
    zones: tuple[tuple[str, int], ...] = ()


def parse_datetime(option: str, value: str) -> datetime:
    """An ISO-8601 time that must carry its UTC offset."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError([f"{option}: {value!r} is not an ISO-8601 time"]) from None
    if parsed.tzinfo is None:
        raise InputError(
            [f"{option}: {value!r} has no UTC offset (write it like 2026-12-07T09:00+03:00)"]
        )
    return parsed


def parse_working_hours(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", value)
    if not match:
        raise InputError([f"--working-hours: {value!r} is not START-END, e.g. 9-18"])
    start, end = int(match[1]), int(match[2])
    if not (0 <= start <= 23 and 1 <= end <= 24):
        raise InputError([f"--working-hours: {value!r}: hours run from 0 to 24"])
    if start >= end:
        raise InputError([f"--working-hours: start {start} must be before end {end}"])
    return start, end


def parse_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError([f"--timezone: unknown time zone {value!r}"]) from None
    return value


def parse_duration(option: str, value: str) -> timedelta:
    match = DURATION.fullmatch(value.strip())
    if not match:
        raise InputError([f"{option}: {value!r} is not a duration like 30m, 2h or 1d"])
    return timedelta(**{UNITS[match[2]]: int(match[1])})


def parse_fail(value: str) -> FailRule:
    """``PATTERN:CODE[ TEXT][@START/DURATION]`` (``all`` matches everyone), e.g.
    ``*@corp.example:450 4.7.1 Greylisted`` (the text, without ``@``, is what the server
    says: mailer reads a 4xx by it).

    Patterns hold ``@`` themselves (``*@bad.example``) but no ``:``, so the code is the
    ``NNN`` after the first ``:``; a window starts at the next ``@``.
    """
    match = FAIL_SPEC.fullmatch(value.strip())
    if not match:
        raise InputError([f"--fail: {value!r} is not PATTERN:CODE, e.g. '*@bad.example:550'"])
    pattern, code, window = match["pattern"], match["code"], match["window"]
    text = (match["text"] or "").strip()
    if not SMTP_CODE.fullmatch(code) or not 400 <= int(code) < 600:
        raise InputError([f"--fail: {code!r} in {value!r} is not an SMTP error code (4xx or 5xx)"])
    if not window:
        return FailRule(pattern, int(code), text=text)
    start_text, sep, duration = window.rpartition("/")
    if not sep:
        raise InputError(
            [f"--fail: window {window!r} is not START/DURATION, e.g. 2026-12-01T10:00+03:00/30m"]
        )
    start = parse_datetime("--fail", start_text)
    end = start + parse_duration("--fail", duration)
    return FailRule(pattern, int(code), start, end, text=text)


def parse_refill(value: str) -> Refill:
    amount, sep, at = value.partition("@")
    if not sep or not amount.strip().isdigit():
        raise InputError(
            [f"--quota-refill: {value!r} is not N@TIME, e.g. 5000@2026-12-08T09:00+03:00"]
        )
    return Refill(int(amount), parse_datetime("--quota-refill", at))


def parse_domains(value: str) -> tuple[tuple[str, int], ...]:
    """``mail.ru=70,gmail.com=30``: the recipients' domains and their shares."""
    found: list[tuple[str, int]] = []
    for entry in (part.strip() for part in value.split(",")):
        domain, _, weight = entry.partition("=")
        domain = domain.strip().lower()
        if not domain or "." not in domain or "@" in domain or not weight.strip().isdigit():
            raise InputError([f"--domains: {entry!r} is not DOMAIN=SHARE (e.g. mail.ru=70)"])
        if int(weight) < 1:
            raise InputError([f"--domains: {entry!r}: the share must be at least 1"])
        found.append((domain, int(weight)))
    return tuple(found)


def parse_zones(value: str) -> tuple[tuple[str, int], ...]:
    """``Asia/Vladivostok=1,Europe/Moscow=2``: the recipients' time zones and their shares
    (a zone alone counts 1)."""
    found: list[tuple[str, int]] = []
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        name, equals, weight = entry.partition("=")
        name = name.strip()
        if equals and not weight.strip().isdigit():
            raise InputError([f"--zones: {entry!r} is not ZONE=SHARE (e.g. Asia/Vladivostok=30)"])
        if not is_zone(name) or "/" not in name:
            raise InputError([f"--zones: {name!r} is not an IANA time zone (e.g. Europe/Moscow)"])
        share = int(weight) if equals else 1
        if share < 1:
            raise InputError([f"--zones: {entry!r}: the share must be at least 1"])
        found.append((name, share))
    if not found:
        raise InputError(["--zones: give at least one zone, e.g. Asia/Vladivostok=1"])
    return tuple(found)


def parse_domain_pacing(value: str) -> str:
    try:
        parse_domain_rates(value)
    except ValueError as exc:
        raise InputError([f"--domain-rate-per-minute: {exc}"]) from None
    return value


def non_negative(option: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise InputError([f"{option}: must be 0 or more, got {value}"])


def positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InputError([f"{option}: must be 1 or more, got {value}"])


AMPLE_QUOTA = 1_000_000_000


def build_options(
    *,
    recipients: int | None,
    campaign: str | None,
    campaigns: int,
    start: str | None,
    now: datetime,
    rate_per_hour: int | None,
    daily_limit: int | None,
    quota: int | None,
    refills: list[str],
    working_hours: str | None,
    timezone: str | None,
    fails: list[str],
    until: str | None,
    defaults: SettingsDefaults,
    domains: str | None = None,
    domain_rate_per_minute: str | None = None,
    working_days: str | None = None,
    holidays: str | None = None,
    holidays_file: str | None = None,
    zones: str | None = None,
) -> SimulationOptions:
    """Check every option and fill in defaults; raises :class:`InputError` naming the option."""
    _check_counts(recipients, campaign, campaigns, rate_per_hour, daily_limit, quota)
    zone_name = parse_timezone(timezone) if timezone else defaults.timezone
    hours = parse_working_hours(working_hours) if working_hours else defaults.working_hours
    start_at, until_at = _period(start, until, now)
    count = recipients if recipients is not None else defaults.pending
    if count is None or count < 1:
        raise InputError([f"--campaign: campaign {campaign} has no pending recipients"])
    quota, notes = _starting_quota(quota, defaults)
    return SimulationOptions(
        recipients=count,
        campaigns=campaigns,
        start=start_at.astimezone(ZoneInfo(zone_name)),
        rate_per_hour=rate_per_hour if rate_per_hour is not None else defaults.rate_per_hour,
        daily_limit=daily_limit if daily_limit is not None else defaults.daily_limit,
        quota=quota,
        working_hours=hours,
        timezone=zone_name,
        refills=tuple(parse_refill(value) for value in refills),
        fail_rules=tuple(parse_fail(value) for value in fails),
        until=until_at,
        source_campaign=campaign,
        notes=notes,
        domains=parse_domains(domains) if domains else defaults.domains,
        domain_rate_per_minute=parse_domain_pacing(
            domain_rate_per_minute
            if domain_rate_per_minute is not None
            else defaults.domain_rate_per_minute
        ),
        **_calendar(working_days, holidays, holidays_file, defaults),
        zones=parse_zones(zones) if zones else defaults.zones,
    )


def _calendar(
    working_days: str | None,
    holidays: str | None,
    holidays_file: str | None,
    defaults: SettingsDefaults,
) -> dict[str, Any]:
    """The calendar options checked as the settings check them (one line naming the option)."""
    days = working_days if working_days is not None else defaults.working_days
    try:
        parse_working_days(days)
    except ValueError as exc:
        raise InputError([f"--working-days: {exc}"]) from None
    try:
        country = country_code(holidays if holidays is not None else defaults.holidays)
    except ValueError as exc:
        raise InputError([f"--holidays: {exc}"]) from None
    file = Path(holidays_file) if holidays_file else defaults.holidays_file
    if file is not None:
        try:
            read_dates_file(file)
        except ValueError as exc:
            raise InputError([f"--holidays-file: {exc}"]) from None
    return {"working_days": days, "holidays": country, "holidays_file": file}


def _period(
    start: str | None, until: str | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """When the simulation starts (default now) and, if given, when it stops."""
    start_at = parse_datetime("--start", start) if start else now
    until_at = parse_datetime("--until", until) if until else None
    if until_at is not None and until_at <= start_at:
        raise InputError([f"--until: {until} is not after the start ({start_at.isoformat()})"])
    return start_at, until_at


def _check_counts(
    recipients: int | None,
    campaign: str | None,
    campaigns: int,
    rate_per_hour: int | None,
    daily_limit: int | None,
    quota: int | None,
) -> None:
    positive("--recipients", recipients)
    positive("--campaigns", campaigns)
    positive("--rate-per-hour", rate_per_hour)
    non_negative("--daily-limit", daily_limit)
    non_negative("--quota", quota)
    if recipients is None and campaign is None:
        raise InputError(["--recipients: give --recipients N or --campaign CAMPAIGN_ID"])
    if recipients is not None and campaign is not None:
        raise InputError(["--recipients: give either --recipients or --campaign, not both"])


def _starting_quota(quota: int | None, defaults: SettingsDefaults) -> tuple[int, list[str]]:
    """The quota at the start, and a note on where it came from when not given."""
    if quota is not None:
        return quota, []
    if defaults.quota is not None:
        note = f"quota {defaults.quota} (the current mailer_smtpbzquota.emails_available)"
        return defaults.quota, [note]
    return AMPLE_QUOTA, ["quota: ample (give --quota N to rehearse running out)"]


@dataclass(frozen=True)
class SettingsDefaults:
    """What the options default to: the settings, the account row, the source campaign."""

    timezone: str
    working_hours: tuple[int, int]
    rate_per_hour: int
    daily_limit: int
    quota: int | None = None
    pending: int | None = None
    domains: tuple[tuple[str, int], ...] = (("simulation.invalid", 1),)
    domain_rate_per_minute: str = ""
    working_days: str = "mon-sun"
    holidays: str = ""
    holidays_file: Path | None = None
    zones: tuple[tuple[str, int], ...] = ()
