"""Pure decisions: each part and each alert of ``deploy/prometheus/alerts.yml``, evaluated
on the facts as OK / WARN / CRIT, with what to do and where the playbook says more.

The thresholds are the seed playbook's (section 4), shared with the alert rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.doctor.facts import Facts, LockHolder, Poller, ScheduleFacts

PLAYBOOK = "docs/playbook.ru.md"
STUCK_AFTER = timedelta(minutes=30)
QUEUE_DEPTH_WARNING = 50
# The dispatcher takes the CRM's requests every 10 s: one older than this is not carried out.
CRM_REQUEST_LATE = timedelta(minutes=1)
QUOTA_SYNC_STALE = timedelta(hours=2)
# Locks are held for milliseconds in mailer's own work: one of its statements waiting this
# long is held up by someone else's transaction (an operator's SQL left open, say).
LOCK_WAIT_LATE = timedelta(seconds=30)
# An idle worker long-polls for about a minute at a time; a poller not seen for longer
# than this is a worker that went away.
POLLER_FRESH = timedelta(minutes=2)
# A schedule whose last run is older than this many intervals (plus a minute) missed runs.
MISSED_INTERVALS = 2


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    CRIT = 2

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    summary: str
    action: str = ""
    playbook: str = ""  # the anchor in docs/playbook.ru.md

    @property
    def link(self) -> str:
        return f"{PLAYBOOK}#{self.playbook}" if self.playbook else ""


def exit_code(checks: list[Check]) -> int:
    """0 all OK, 1 any WARN, 2 any CRIT."""
    return int(max((check.level for check in checks), default=Level.OK))


def evaluate(facts: Facts) -> list[Check]:
    checks = [_temporal(facts), _postgres(facts), _redis(facts)]
    if facts.redis.reachable:
        checks.append(_old_engine(facts))
    if facts.temporal.reachable:
        checks += [_workers(facts), _workflow_tasks(facts), _schedules(facts)]
    if facts.database.reachable:
        checks += [_stuck(facts), _transient(facts), _queue_depth(facts), _quota(facts)]
        checks += [_crm_requests(facts), _lock_waits(facts)]
    if facts.database.reachable and facts.temporal.reachable:
        checks.append(_drift(facts))
    if facts.unsubscribe is not None:
        checks.append(_unsubscribe(facts))
    return checks


def _unsubscribe(facts: Facts) -> Check:
    found = facts.unsubscribe
    assert found is not None
    if not found.configured:
        return Check(
            "unsubscribe",
            Level.WARN,
            "MAILER_UNSUBSCRIBE_SECRET is not set: messages carry no one-click unsubscribe "
            "(Gmail and Yahoo require it from bulk senders)",
            "set MAILER_UNSUBSCRIBE_SECRET (and MAILER_UNSUBSCRIBE_BASE_URL) for the worker "
            "and `mailer web`",
            "unsubscribe",
        )
    if found.reachable:
        return Check("unsubscribe", Level.OK, f"the unsubscribe service at {found.url} answers")
    return Check(
        "unsubscribe",
        Level.WARN,
        f"the unsubscribe service at {found.url} does not answer ({found.error}): recipients' "
        "unsubscribe links fail",
        "start `mailer web` (`make up`, or `docker compose up -d web`); check "
        "MAILER_UNSUBSCRIBE_BASE_URL",
        "unsubscribe",
    )


def live_pollers(
    pollers: list[Poller], now: datetime, gone_after: timedelta = POLLER_FRESH
) -> list[Poller]:
    """The pollers seen within ``gone_after`` (a stopped worker's stay listed a while)."""
    return [p for p in pollers if p.last_access is None or now - p.last_access <= gone_after]


def _part(
    name: str, label: str, address: str, error: str, consequence: str, action: str, anchor: str
) -> Check:
    """A server mailer needs: OK when it answers, else CRIT with its address and error."""
    if not error:
        return Check(name, Level.OK, f"{label} at {address} answers")
    return Check(
        name,
        Level.CRIT,
        f"{label} at {address} unreachable ({error}): {consequence}",
        action,
        anchor,
    )


def _temporal(facts: Facts) -> Check:
    t = facts.temporal
    return _part(
        "temporal",
        "Temporal",
        t.address,
        t.error,
        "campaigns wait, nothing is lost, nothing is sent",
        "start the Temporal server (`make up`, or `docker compose up -d temporal`); check "
        "MAILER_TEMPORAL_ADDRESS",
        "temporal-down",
    )


def _postgres(facts: Facts) -> Check:
    db = facts.database
    return _part(
        "postgres",
        "PostgreSQL",
        db.address,
        db.error,
        "batches retry until it is back",
        "start PostgreSQL (`make up`, or `docker compose up -d postgres`); check "
        "MAILER_DATABASE_URL",
        "postgres-down",
    )


def _redis(facts: Facts) -> Check:
    r = facts.redis
    return _part(
        "redis",
        "Redis",
        r.address,
        r.error,
        f"the rate limiter fails open — sending goes on without the {facts.rate_per_hour}/h "
        "window and the per-user throttles",
        "restart Redis (`make up`, or `docker compose restart redis`); the first batch after "
        "it is back raises the window to the send log's count",
        "redis-down",
    )


def _old_engine(facts: Facts) -> Check:
    ttl = facts.redis.old_engine_lock_ttl
    if ttl is None:
        return Check("old_engine", Level.OK, "the Celery engine's lock is not held")
    lasts = "with no expiry" if ttl < 0 else f"for {ttl} s more"
    return Check(
        "old_engine",
        Level.CRIT,
        f"the old engine is running: crm:mailer:send_pending_emails:lock is held ({lasts}); "
        "mailer sends nothing meanwhile",
        "stop Celery beat and its workers (docs/cutover.md); sending starts within 30 s of the "
        "lock going away",
        "old-engine",
    )


def _crm_requests(facts: Facts) -> Check:
    db, oldest = facts.database, facts.database.oldest_crm_request_at
    if oldest is None or facts.now - oldest <= CRM_REQUEST_LATE:
        listening = (
            f"{db.crm_request_listeners} worker connection(s) listening: carried out in about "
            "a second"
            if db.crm_request_listeners
            else "no worker listening: carried out at the dispatcher's 10 s turn"
        )
        return Check(
            "crm_requests", Level.OK, f"{db.crm_requests} CRM request(s) waiting; {listening}"
        )
    late = int((facts.now - oldest).total_seconds())
    return Check(
        "crm_requests",
        Level.CRIT,
        f"{db.crm_requests} CRM request(s) not carried out, the oldest for {late} s: the tables "
        "and the workflows disagree (a start, pause, resume or cancel the CRM asked for)",
        "check the workers (`mailer doctor`: workers) and the dispatcher: `temporal workflow "
        "describe --workflow-id mailer-dispatcher-<task queue>`",
        "crm-requests",
    )


def _lock_waits(facts: Facts) -> Check:
    late = [w for w in facts.database.lock_waits if w.waiting >= LOCK_WAIT_LATE]
    if not late:
        return Check("lock_waits", Level.OK, "no statement of mailer's waits for a lock")
    longest = late[0]
    holders = "; ".join(_holder(holder) for holder in longest.holders)
    pids = ", ".join(str(holder.pid) for holder in longest.holders)
    return Check(
        "lock_waits",
        Level.CRIT,
        f"{len(late)} statement(s) of mailer wait for a lock, the longest (pid {longest.pid}, "
        f"{longest.application}) for {_duration(longest.waiting)}, held by {holders}: its "
        "batch stands still until the holder commits or rolls back",
        f"see what the holder is: `SELECT pid, usename, application_name, state, xact_start, "
        f"query FROM pg_stat_activity WHERE pid IN ({pids})`; end its transaction in its own "
        f"session (COMMIT or ROLLBACK), or `SELECT pg_terminate_backend(pid)`; mailer carries "
        "on where it waited, nothing is lost",
        "lock-wait",
    )


def _holder(holder: LockHolder) -> str:
    parts = [holder.application or "no application name"]
    if holder.state is not None:
        parts.append(holder.state)
    if holder.transaction_age is not None:
        parts.append(f"transaction open {_duration(holder.transaction_age)}")
    if holder.client:
        parts.append(f"from {holder.client}")
    return f"pid {holder.pid} ({', '.join(parts)})"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _drift(facts: Facts) -> Check:
    drift = facts.temporal.drift
    if not drift:
        return Check("drift", Level.OK, "the tables and the workflows agree")
    named = "; ".join(
        f"{d.campaign_id}: table {d.table_status}, workflow {d.workflow} (wants {d.wanted})"
        for d in drift[:5]
    )
    return Check(
        "drift",
        Level.WARN,
        f"{len(drift)} campaign(s) whose table and workflow disagree: {named}",
        "a gone run: `temporal schedule trigger --schedule-id mailer-reconcile` restarts it "
        "from its row; otherwise `mailer pause ID`, `mailer resume ID` or `mailer cancel ID` "
        "as the row says",
        "crm-requests",
    )


def _workers(facts: Facts) -> Check:
    temporal = facts.temporal
    workflow = live_pollers(temporal.workflow_pollers, facts.now, temporal.poller_gone_after)
    activity = live_pollers(temporal.activity_pollers, facts.now, temporal.poller_gone_after)
    if workflow and activity:
        identities = sorted({p.identity for p in workflow + activity})
        return Check(
            "workers",
            Level.OK,
            f"{len(identities)} worker(s) polling task queue {temporal.task_queue!r}: "
            + ", ".join(identities),
        )
    missing = (
        "workflow and activity"
        if not workflow and not activity
        else ("workflow" if not workflow else "activity")
    )
    return Check(
        "workers",
        Level.CRIT,
        f"no pollers ({missing}) on task queue {temporal.task_queue!r}: no worker is running, "
        "campaigns stand still",
        "start a worker: `python -m worker` (compose: `docker compose up -d worker`); check "
        "MAILER_TASK_QUEUE matches",
        "no-worker",
    )


def _workflow_tasks(facts: Facts) -> Check:
    failing = facts.temporal.failing_workflow_tasks
    if not failing:
        return Check("workflow_tasks", Level.OK, "no campaign workflow task is failing")
    worst = max(failing, key=lambda f: f.attempt)
    return Check(
        "workflow_tasks",
        Level.CRIT,
        f"{len(failing)} campaign workflow(s) failing their workflow task (campaign "
        f"{worst.campaign_id}, attempt {worst.attempt}): a non-determinism error after a "
        "deploy, or a bug; the campaign stands still",
        f"`temporal workflow describe --workflow-id campaign-{worst.campaign_id}` shows the "
        "error; roll the worker back to the previous version",
        "workflow-task-failing",
    )


def _schedule_problem(schedule: ScheduleFacts, now: datetime) -> str:
    if not schedule.found:
        return f"{schedule.schedule_id} does not exist (a worker creates it when it starts)"
    if schedule.paused:
        return f"{schedule.schedule_id} is paused"
    if schedule.every is not None:
        allowed = schedule.every * MISSED_INTERVALS + timedelta(minutes=1)
        if schedule.last_run is None or now - schedule.last_run > allowed:
            last = schedule.last_run.isoformat(timespec="seconds") if schedule.last_run else "never"
            return f"{schedule.schedule_id} missed its runs (every {schedule.every}, last {last})"
    return ""


def _schedules(facts: Facts) -> Check:
    problems = [p for s in facts.temporal.schedules if (p := _schedule_problem(s, facts.now))]
    if not problems:
        return Check("schedules", Level.OK, "quota sync and reconcile schedules run on time")
    return Check(
        "schedules",
        Level.WARN,
        "scheduled work not running: " + "; ".join(problems),
        "`temporal schedule describe --schedule-id mailer-quota-sync` (and mailer-reconcile); "
        "unpause with `temporal schedule toggle --schedule-id ID --unpause --reason …`, run "
        "now with `temporal schedule trigger --schedule-id ID`",
        "schedules",
    )


def _stuck(facts: Facts) -> Check:
    stuck = [
        s
        for s in facts.database.stuck
        if s.started_at is None or facts.now - s.started_at > STUCK_AFTER
    ]
    if not stuck:
        return Check("stuck_processing", Level.OK, "no queue row 'processing' over 30 minutes")
    ids = ", ".join(s.campaign_id for s in stuck[:5])
    return Check(
        "stuck_processing",
        Level.CRIT,
        f"{len(stuck)} campaign(s) 'processing' for over 30 minutes: {ids}",
        "check the workers (`mailer doctor`: workers); the reconcile schedule resets rows with "
        "no live batch: `temporal schedule trigger --schedule-id mailer-reconcile`",
        "stuck-processing",
    )


def _transient(facts: Facts) -> Check:
    threshold = facts.circuit_breaker_threshold
    tripped = [c for c in facts.database.campaigns if c.consecutive_transient_errors >= threshold]
    if not tripped:
        worst = max((c.consecutive_transient_errors for c in facts.database.campaigns), default=0)
        return Check(
            "transient_errors",
            Level.OK,
            f"consecutive transient errors at most {worst} (breaker at {threshold})",
        )
    ids = ", ".join(c.campaign_id for c in tripped[:5])
    return Check(
        "transient_errors",
        Level.CRIT,
        f"{len(tripped)} campaign(s) at {threshold}+ consecutive transient errors (the circuit "
        f"breaker paused them): {ids}",
        "check the SMTP server and `mailer status ID` (last_error); once fixed, `mailer resume ID`",
        "transient-error",
    )


def _queue_depth(facts: Facts) -> Check:
    depth = facts.database.queue_depth
    if depth <= QUEUE_DEPTH_WARNING:
        return Check("queue_depth", Level.OK, f"{depth} campaign(s) pending in the queue")
    return Check(
        "queue_depth",
        Level.WARN,
        f"{depth} campaigns pending in the queue (over {QUEUE_DEPTH_WARNING})",
        "look at the top defer reasons below; `mailer list --reason REASON`",
        "queue-depth",
    )


def _quota(facts: Facts) -> Check:
    quota = facts.database.quota
    if quota is None:
        return Check(
            "quota",
            Level.WARN,
            "no quota row: the quota was never synced",
            "`mailer quota sync`; check `mailer account show` (smtp_bz_api_key)",
            "quota-not-syncing",
        )
    stale = quota.last_synced_at is None or facts.now - quota.last_synced_at > QUOTA_SYNC_STALE
    if quota.emails_available <= 0 and stale:
        synced = (
            quota.last_synced_at.isoformat(timespec="minutes") if quota.last_synced_at else "never"
        )
        error = f", sync error: {quota.sync_error}" if quota.sync_error else ""
        return Check(
            "quota",
            Level.WARN,
            f"quota exhausted ({quota.emails_available}) and last good sync {synced}{error}",
            "top up the quota at smtp.bz, then `mailer quota sync`; if the sync fails check "
            "the API key (`mailer account show`)",
            "quota-not-syncing",
        )
    return Check(
        "quota",
        Level.OK,
        f"{quota.emails_available} emails available of {quota.emails_limit}",
    )
