"""The doctor's answer, as text for a terminal or JSON for scripts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from mailer.core.jsonable import jsonable
from mailer.doctor.checks import Check, Level, exit_code, live_pollers
from mailer.doctor.facts import Facts, Poller


def as_json(facts: Facts, checks: list[Check]) -> dict[str, object]:
    return {
        "status": Level(exit_code(checks)).label,
        "exit_code": exit_code(checks),
        "facts": jsonable(facts, facts.timezone),
        "checks": [
            {
                "name": check.name,
                "level": check.level.label,
                "summary": check.summary,
                "action": check.action,
                "playbook": check.link,
            }
            for check in checks
        ],
    }


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "-"


def _pollers(now: datetime, pollers: list[Poller]) -> str:
    if not pollers:
        return "none"
    return ", ".join(f"{p.identity} (last poll {_ago(now, p.last_access)})" for p in pollers)


def as_text(facts: Facts, checks: list[Check]) -> str:
    """The report an operator reads: each part, the active campaigns, then the checks."""
    zone = ZoneInfo(facts.timezone)
    lines = [f"mailer doctor — {_when(facts.now, zone)} ({facts.timezone})", ""]
    lines += _temporal_lines(facts, zone)
    lines += _server_lines(facts)
    if facts.database.reachable:
        lines += _ledger_lines(facts, zone)
    lines += _check_lines(checks)
    return "\n".join(lines)


def _temporal_lines(facts: Facts, zone: ZoneInfo) -> list[str]:
    t, now = facts.temporal, facts.now
    lines = [f"Temporal    {t.address} (namespace {t.namespace}): {t.error or 'reachable'}"]
    if not t.reachable:
        return lines
    gone = t.poller_gone_after
    live = live_pollers(t.workflow_pollers, now, gone) + live_pollers(t.activity_pollers, now, gone)
    lines.append(
        f"Workers     task queue {t.task_queue!r}: {len({p.identity for p in live})} live; "
        f"workflow pollers: {_pollers(now, t.workflow_pollers)}; "
        f"activity pollers: {_pollers(now, t.activity_pollers)}"
    )
    for s in t.schedules:
        if not s.found:
            lines.append(f"Schedule    {s.schedule_id}: missing")
            continue
        lines.append(
            f"Schedule    {s.schedule_id}: {'PAUSED, ' if s.paused else ''}every {s.every}, "
            f"last run {_ago(now, s.last_run)}, next {_when(s.next_run, zone)}"
        )
    return lines


def _server_lines(facts: Facts) -> list[str]:
    db, r, u = facts.database, facts.redis, facts.unsubscribe
    lines = [f"PostgreSQL  {db.address}: {db.error or 'reachable'}"]
    if r.reachable:
        count = "no key yet" if r.rate_count is None else str(r.rate_count)
        lines.append(
            f"Redis       {r.address}: reachable; rate window {r.rate_key} = {count} "
            f"of {facts.rate_per_hour}"
        )
    else:
        lines.append(f"Redis       {r.address}: {r.error} — the rate limiter FAILS OPEN")
    if u is not None:
        if not u.configured:
            state = "off (no MAILER_UNSUBSCRIBE_SECRET)"
        else:
            state = "answers" if u.reachable else u.error
        lines.append(f"Unsubscribe {u.url}: {state}")
    return lines


def _ledger_lines(facts: Facts, zone: ZoneInfo) -> list[str]:
    db, now = facts.database, facts.now
    lines = [
        f"Rate        {db.sent_this_hour} sent this clock hour (send log) of {facts.rate_per_hour}"
    ]
    if db.quota is None:
        lines.append("Quota       no quota row (never synced)")
    else:
        q = db.quota
        lines.append(
            f"Quota       {q.emails_available} available of {q.emails_limit}; last good "
            f"sync {_ago(now, q.last_synced_at)}; sync error: {q.sync_error or 'none'}"
        )
    lines += ["", f"Active campaigns ({len(db.campaigns)})"]
    for c in db.campaigns:
        deferral = (
            f" {c.defer_reason} until {_when(c.deferred_until, zone)}" if c.defer_reason else ""
        )
        lines.append(
            f"  {c.campaign_id}  {c.status}/{c.queue_status or '-'}{deferral}  "
            f"errors {c.consecutive_transient_errors}  pending {c.pending} sent {c.sent} "
            f"failed {c.failed}  {c.name}"
        )
    if db.defer_reasons:
        lines += ["", "Top defer reasons"]
        for reason in db.defer_reasons:
            lines.append(
                f"  {reason.reason:<16} {reason.campaigns} campaign(s), earliest resume "
                f"{_when(reason.earliest_resume, zone)}"
            )
    return lines


def _check_lines(checks: list[Check]) -> list[str]:
    lines = ["", "Checks"]
    for check in checks:
        lines.append(f"  {check.level.label:<4}  {check.name:<17} {check.summary}")
        if check.level != Level.OK:
            lines.append(f"        action: {check.action}")
            if check.link:
                lines.append(f"        playbook: {check.link}")
    code = exit_code(checks)
    return [*lines, "", f"Result: {Level(code).label} (exit {code})"]
