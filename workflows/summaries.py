"""What the Temporal Web UI says about a campaign, in the operator's words (pure functions).

The UI shows a workflow's **static summary** as its header and in the list, its **static
details** on the page, and each timer's and activity's summary on the timeline. These build
that text; the starters set the static parts, the workflow the timeline's. The UI reads it
as markdown, so text a CRM user typed (a campaign's name) is escaped, flattened to one line
and cut to length, and anything shaped like an address is masked: workflows carry ids and
counts, never a recipient's address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

# Temporal keeps a summary short (a few hundred bytes); a name longer than this is cut.
NAME_CHARS = 120
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")
_ADDRESS = re.compile(r"([^\s@])[^\s@]*@([^\s@]+\.[^\s@]+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def plain(text: str, limit: int = NAME_CHARS) -> str:
    """``text`` as literal markdown on one line: control characters and line breaks become
    spaces, addresses are masked (``o***@example.com``), markdown is escaped, at most
    ``limit`` characters of the original are kept (``…`` marks a cut)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    masked = _ADDRESS.sub(r"\1***@\2", flat)
    cut = masked if len(masked) <= limit else masked[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", cut)


@dataclass(frozen=True)
class CampaignCard:
    """What the header says: no address, no secret."""

    campaign_id: str
    name: str
    recipients: int
    creator: str  # the creator's username ('' when none)
    creator_id: int | None


@dataclass(frozen=True)
class LimitsInForce:
    """The limits a campaign starts under, for its static details."""

    timezone: str
    working_hours_start: int
    working_hours_end: int
    rate_per_hour: int
    daily_limit: int  # the creator's per-day limit, 0: none
    breaker_threshold: int
    retry_delay_minutes: int


def campaign_summary(card: CampaignCard) -> str:
    """One line: ``Декабрьская рассылка · 1,200 recipients · by olga``."""
    by = f" · by {plain(card.creator, 60)}" if card.creator else ""
    return f"{plain(card.name)} · {card.recipients:,} recipients{by}"


def campaign_details(card: CampaignCard, limits: LimitsInForce) -> str:
    """The limits in force at the start and where to look next (markdown)."""
    daily = f"{limits.daily_limit:,} a day per user" if limits.daily_limit else "no daily limit"
    return "\n".join(
        [
            f"**Campaign** `{card.campaign_id}`",
            "",
            f"- sends {limits.working_hours_start:02d}:00–{limits.working_hours_end:02d}:00 "
            f"{limits.timezone}, at most {limits.rate_per_hour:,} emails an hour, {daily}",
            f"- pauses after {limits.breaker_threshold} consecutive transient errors; "
            f"retries after {limits.retry_delay_minutes} min",
            f"- `mailer status {card.campaign_id}`: the tables' view, live state and errors",
            "- signals: `pause`, `resume`, `cancel` (Send Signal, no input)",
        ]
    )


def sleep_summary(reason: str, until: datetime, now: datetime, zone: str) -> str:
    """The deferral's timer: ``outside_hours until 09:00 MSK`` (``Mon 07 Dec 09:00 MSK``
    when not today in ``zone``)."""
    return f"{reason} until {_when(until, now, zone)}"


def scheduled_summary(start_at: datetime, now: datetime, zone: str) -> str:
    """A scheduled start's timer: ``scheduled start at Mon 07 Dec 09:00 MSK``."""
    return f"scheduled start at {_when(start_at, now, zone)}"


def _when(at: datetime, now: datetime, zone: str) -> str:
    """``09:00 MSK`` today in ``zone``, ``Mon 07 Dec 09:00 MSK`` another day."""
    tz = ZoneInfo(zone)
    local, today = at.astimezone(tz), now.astimezone(tz)
    return local.strftime("%H:%M %Z" if local.date() == today.date() else "%a %d %b %H:%M %Z")


def batch_summary(allowance: int) -> str:
    return f"batch of {allowance}"


def record_summary(status: str, defer_reason: str, pause_reason: str) -> str:
    """The mirror into the tables: ``record deferred: rate_per_hour``, ``record paused:
    breaker: 10 consecutive transient errors …`` (the reason as the details show it)."""
    if status == "paused" and pause_reason:
        return f"record paused: {plain(pause_reason, 160)}"
    if defer_reason:
        return f"record deferred: {defer_reason}"
    return f"record {status}"
