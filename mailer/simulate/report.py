"""Turn a simulation's raw outcome into the forecast: JSON and a human table."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from workflows.states import FINAL_WORKFLOW_STATES, CampaignStatus, SendLogStatus, WorkflowState

if TYPE_CHECKING:  # the runner brings the worker, Temporal's and the test server's code
    from mailer.simulate.runner import RawOutcome


@dataclass
class Forecast:
    started_at: datetime
    completed_at: datetime | None
    status: str
    sent: int
    failed: int
    pending: int
    hours: list[dict[str, Any]]
    deferrals: list[dict[str, Any]]
    wall_seconds: float
    # Per recipient domain: sent, failed, still pending, refused with a 4xx on the way
    # ("waited"), and when its last message went.
    domains: list[dict[str, Any]] = field(default_factory=list)
    # Per recipients' time zone (with --zones): sent, pending, first and last send in the
    # zone's own local time.
    zones: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "status": self.status,
            "sent": self.sent,
            "failed": self.failed,
            "pending": self.pending,
            "hours": self.hours,
            "deferrals": self.deferrals,
            "wall_seconds": round(self.wall_seconds, 2),
            "domains": self.domains,
            "zones": self.zones,
        }


def overall_status(states: list[WorkflowState]) -> str:
    if all(state == WorkflowState.SENT for state in states):
        return WorkflowState.SENT
    if any(state == WorkflowState.PAUSED for state in states):
        return WorkflowState.PAUSED
    if all(state in FINAL_WORKFLOW_STATES for state in states):
        return WorkflowState.CANCELLED
    return "running"


def build_forecast(
    raw: RawOutcome, *, started_at: datetime, timezone: str, recipients: int
) -> Forecast:
    zone = ZoneInfo(timezone)

    def local(moment: datetime) -> datetime:
        return (moment - raw.shift).astimezone(zone)

    hours: dict[datetime, Counter[str]] = defaultdict(Counter)
    for created_at, status in raw.sends:
        hour = local(created_at).replace(minute=0, second=0, microsecond=0)
        hours[hour][status] += 1
    sent = sum(counts[SendLogStatus.SENT] for counts in hours.values())
    failed = sum(counts[SendLogStatus.FAILED] for counts in hours.values())

    deferrals = []
    finished: list[datetime] = []
    for item in raw.records:
        record = item.record
        if record.campaign_status == CampaignStatus.SENT:
            finished.append(record.now)
        sending = record.campaign_status == CampaignStatus.SENDING
        if record.defer_reason and sending and record.deferred_until:
            deferrals.append(
                {
                    "campaign": item.campaign,
                    "reason": record.defer_reason,
                    "from": local(record.now).isoformat(),
                    "until": local(record.deferred_until).isoformat(),
                }
            )
    status = overall_status(raw.states)
    completed_at = local(max(finished)) if status == WorkflowState.SENT and finished else None
    total = recipients * len(raw.campaign_ids)
    return Forecast(
        started_at=started_at.astimezone(zone),
        completed_at=completed_at,
        status=status,
        sent=sent,
        failed=failed,
        pending=total - sent - failed,
        hours=[
            {"hour": hour.isoformat(), "sent": counts["sent"], "failed": counts["failed"]}
            for hour, counts in sorted(hours.items())
        ],
        deferrals=deferrals,
        wall_seconds=raw.wall_seconds,
        domains=[
            {
                "domain": d.domain,
                "sent": d.sent,
                "failed": d.failed,
                "pending": d.pending,
                "waited": d.waited,
                "last_sent_at": local(d.last_sent_at).isoformat() if d.last_sent_at else None,
            }
            for d in raw.domains
        ],
        zones=[
            {
                "zone": z.zone or timezone,
                "sent": z.sent,
                "pending": z.pending,
                "first_sent_at": _in(z.first_sent_at, raw.shift, z.zone or timezone),
                "last_sent_at": _in(z.last_sent_at, raw.shift, z.zone or timezone),
            }
            for z in raw.zones
        ],
    )


def _in(moment: datetime | None, shift: timedelta, zone: str) -> str | None:
    """``moment`` moved back by the simulation's shift, in ``zone``'s local time."""
    return (moment - shift).astimezone(ZoneInfo(zone)).isoformat() if moment else None


def working_day_number(started_at: datetime, moment: datetime) -> int:
    """1 for the start's day, counting calendar days (every day is a sending day)."""
    return (moment.date() - started_at.date()).days + 1


def daily_rows(forecast: Forecast) -> list[tuple[str, int, int, str]]:
    """(day, sent, failed, deferrals) for the human table."""
    sent: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for hour in forecast.hours:
        day = hour["hour"][:10]
        sent[day] += hour["sent"]
        failed[day] += hour["failed"]
    spans: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for deferral in forecast.deferrals:
        day = deferral["from"][:10]
        counts[day][deferral["reason"]] += 1
        if deferral["reason"] != "rate_per_hour":
            start = deferral["from"][11:16]
            end = datetime.fromisoformat(deferral["until"])
            # Within the week the weekday says it; further (holidays) the date too.
            far = (end.date() - datetime.fromisoformat(deferral["from"]).date()).days > 6
            spans[day].append(
                f"{deferral['reason']} {start}→{end:%a %d %b %H:%M}"
                if far
                else f"{deferral['reason']} {start}→{end:%a %H:%M}"
            )
    days = sorted(set(sent) | set(failed) | set(counts))
    rows = []
    for day in days:
        notes = list(spans[day])
        if counts[day]["rate_per_hour"]:
            notes.append(f"rate_per_hour ×{counts[day]['rate_per_hour']}")
        weekday = datetime.fromisoformat(day).strftime("%a")
        rows.append((f"{day} {weekday}", sent[day], failed[day], "; ".join(notes)))
    return rows


def summary_line(forecast: Forecast) -> str:
    total = forecast.sent + forecast.failed + forecast.pending
    if forecast.status == "sent" and forecast.completed_at is not None:
        day = working_day_number(forecast.started_at, forecast.completed_at)
        when = f"{forecast.completed_at:%a %Y-%m-%d %H:%M %z}"
        return (
            f"Forecast: all {total} handled by {when} (day {day}): {forecast.sent} sent, "
            f"{forecast.failed} failed; simulated in {forecast.wall_seconds:.1f} s"
        )
    return (
        f"Forecast: {forecast.status} at the end of the simulation: {forecast.sent} sent, "
        f"{forecast.failed} failed, {forecast.pending} pending; simulated in "
        f"{forecast.wall_seconds:.1f} s"
    )
