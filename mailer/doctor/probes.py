"""The doctor's I/O: look at Temporal, PostgreSQL and Redis at once, each under a deadline.

A part that cannot be reached comes back with its address and the error's first line;
nothing here raises for a part being down, and the whole look takes under five seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    ScheduleIntervalSpec,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.ratelimit import OLD_ENGINE_LOCK
from db.engine import APPLICATION_NAME, LISTENER_APPLICATION_NAME
from mailer.core import temporal_client
from mailer.core.settings import Settings, without_password
from mailer.doctor.facts import (
    CampaignFacts,
    DatabaseFacts,
    DeferReasonCount,
    Drift,
    Facts,
    FailingWorkflowTask,
    LockHolder,
    LockWait,
    Poller,
    QuotaFacts,
    RedisFacts,
    ScheduleFacts,
    StuckProcessing,
    TemporalFacts,
    UnsubscribeFacts,
)
from workflows.campaign import workflow_id_for
from workflows.contracts import Progress
from workflows.maintenance import QUOTA_SYNC_SCHEDULE_ID, RECONCILE_SCHEDULE_ID
from workflows.requests import Action, CampaignRow, decide
from workflows.search_attributes import MAILER_STATUS
from workflows.states import WorkflowState
from workflows.working_hours import clock_hour_bounds, rate_window_key

PART_TIMEOUT = 3.0  # each part's own deadline, seconds
SCHEDULE_IDS = (QUOTA_SYNC_SCHEDULE_ID, RECONCILE_SCHEDULE_ID)
# Workflow descriptions asked for (to find failing workflow tasks), at most.
MAX_DESCRIBED_CAMPAIGNS = 20


def first_line(error: BaseException) -> str:
    text_ = str(getattr(error, "orig", None) or error).strip()
    return without_password(text_.splitlines()[0] if text_ else type(error).__name__)


async def look(settings: Settings, now: datetime | None = None) -> Facts:
    """Everything the doctor shows, gathered concurrently."""
    now = now or datetime.now(UTC)
    database, redis_facts, temporal, unsubscribe = await asyncio.gather(
        asyncio.to_thread(look_at_database, settings, now),
        asyncio.to_thread(look_at_redis, settings, now),
        look_at_temporal(settings),
        look_at_unsubscribe(settings),
    )
    if temporal.reachable and database.reachable:
        temporal.failing_workflow_tasks, temporal.drift = await _described_campaigns(
            settings, database
        )
    return Facts(
        now=now,
        timezone=settings.timezone,
        rate_per_hour=settings.rate_per_hour,
        circuit_breaker_threshold=settings.circuit_breaker_threshold,
        temporal=temporal,
        database=database,
        redis=redis_facts,
        unsubscribe=unsubscribe,
    )


# --- PostgreSQL ---------------------------------------------------------------------------

_CAMPAIGNS = """
SELECT c.id, c.name, c.status, coalesce(q.status, ''), coalesce(q.defer_reason, ''),
       q.deferred_until, coalesce(q.consecutive_transient_errors, 0),
       count(*) FILTER (WHERE r.status = 'pending'),
       count(*) FILTER (WHERE r.status = 'sent'),
       count(*) FILTER (WHERE r.status = 'failed')
FROM mailer_campaign c
LEFT JOIN mailer_campaignqueue q ON q.campaign_id = c.id
LEFT JOIN mailer_campaignrecipient r ON r.campaign_id = c.id
WHERE c.status IN ('sending', 'paused')
GROUP BY c.id, q.id
ORDER BY c.created_at
"""

_DEFER_REASONS = """
SELECT defer_reason, count(*), min(deferred_until)
FROM mailer_campaignqueue
WHERE status = 'pending' AND defer_reason != ''
GROUP BY defer_reason
ORDER BY count(*) DESC, defer_reason
"""

_PROCESSING = """
SELECT campaign_id, started_at FROM mailer_campaignqueue
WHERE status = 'processing' ORDER BY started_at NULLS FIRST
"""

_QUEUE_DEPTH = "SELECT count(*) FROM mailer_campaignqueue WHERE status = 'pending'"
_CRM_REQUESTS = "SELECT count(*), min(created_at) FROM mailer_request"
MAX_LOCK_ROWS = 50  # waiter-holder pairs read at most: enough to name the culprit
# mailer's statements waiting for a lock, and who holds it (pg_blocking_pids): any role
# sees these columns of another's session but its state and transaction start, which
# PostgreSQL shows only to a superuser or pg_read_all_stats (NULL otherwise). Never the
# query: it may hold recipients' addresses.
_LOCK_WAITS = f"""
SELECT waiter.pid, waiter.application_name, now() - waiter.query_start,
       holder.pid, holder.application_name, holder.state, now() - holder.xact_start,
       coalesce(host(holder.client_addr), '')
FROM pg_stat_activity AS waiter
CROSS JOIN LATERAL unnest(pg_blocking_pids(waiter.pid)) AS blocking(pid)
JOIN pg_stat_activity AS holder ON holder.pid = blocking.pid
WHERE waiter.datname = current_database() AND waiter.wait_event_type = 'Lock'
  AND starts_with(waiter.application_name, '{APPLICATION_NAME}')
ORDER BY 3 DESC, 1, 4
LIMIT {MAX_LOCK_ROWS}
"""

# Any role may read another session's application_name (not its query).
_CRM_REQUEST_LISTENERS = f"""
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = '{LISTENER_APPLICATION_NAME}'
"""

_QUOTA = """
SELECT emails_available, emails_limit, last_synced_at, sync_error
FROM mailer_smtpbzquota ORDER BY id DESC LIMIT 1
"""

_SENT_IN_HOUR = """
SELECT count(*) FROM mailer_sendlog
WHERE provider = 'smtp_global' AND created_at >= :start AND created_at < :end
"""


def database_address(settings: Settings) -> str:
    url = make_url(settings.sqlalchemy_url)
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def lock_waits(rows: Sequence[Sequence[Any]]) -> list[LockWait]:
    """Rows of ``_LOCK_WAITS`` (one per waiter and holder) as one wait per waiter, in the
    rows' order (the longest first)."""
    waits: dict[int, LockWait] = {}
    for pid, application, waiting, holder, holder_application, state, age, client in rows:
        wait = waits.setdefault(pid, LockWait(pid, application or "", waiting or timedelta(0)))
        wait.holders.append(LockHolder(holder, holder_application or "", state, age, client))
    return list(waits.values())


def look_at_database(settings: Settings, now: datetime) -> DatabaseFacts:
    facts = DatabaseFacts(address=database_address(settings))
    engine = create_engine(
        settings.sqlalchemy_url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": int(PART_TIMEOUT),
            "options": f"-c statement_timeout={int(PART_TIMEOUT * 1000)}",
        },
    )
    try:
        with engine.connect() as conn:
            facts.campaigns = [
                CampaignFacts(str(row[0]), *row[1:]) for row in conn.execute(text(_CAMPAIGNS))
            ]
            facts.defer_reasons = [
                DeferReasonCount(*row) for row in conn.execute(text(_DEFER_REASONS))
            ]
            facts.stuck = [
                StuckProcessing(str(row[0]), row[1]) for row in conn.execute(text(_PROCESSING))
            ]
            facts.queue_depth = int(conn.execute(text(_QUEUE_DEPTH)).scalar_one())
            facts.crm_requests, facts.oldest_crm_request_at = conn.execute(
                text(_CRM_REQUESTS)
            ).one()
            facts.crm_request_listeners = int(
                conn.execute(text(_CRM_REQUEST_LISTENERS)).scalar_one()
            )
            facts.lock_waits = lock_waits(conn.execute(text(_LOCK_WAITS)).all())
            quota = conn.execute(text(_QUOTA)).first()
            if quota is not None:
                facts.quota = QuotaFacts(*quota)
            start, end = clock_hour_bounds(now, settings.timezone)
            facts.sent_this_hour = int(
                conn.execute(text(_SENT_IN_HOUR), {"start": start, "end": end}).scalar_one()
            )
    except SQLAlchemyError as exc:
        facts.error = first_line(exc)
    finally:
        engine.dispose()
    return facts


# --- the unsubscribe service ------------------------------------------------------------


async def look_at_unsubscribe(settings: Settings) -> UnsubscribeFacts:
    facts = UnsubscribeFacts(bool(settings.unsubscribe_key), settings.unsubscribe_base_url)
    if not facts.configured:
        return facts
    try:
        async with httpx.AsyncClient(timeout=PART_TIMEOUT) as client:
            response = await client.get(f"{facts.url}/healthz")
        if response.status_code != 200:
            facts.error = f"HTTP {response.status_code}: {response.text.strip()[:80]}"
    except httpx.HTTPError as exc:
        facts.error = first_line(exc) or type(exc).__name__
    return facts


# --- Redis -----------------------------------------------------------------------------------


def redis_address(settings: Settings) -> str:
    """``host:port/db`` of MAILER_REDIS_URL (never its password)."""
    url = urlsplit(settings.redis_connection_url)
    return f"{url.hostname or 'localhost'}:{url.port or 6379}/{url.path.strip('/') or '0'}"


def look_at_redis(settings: Settings, now: datetime) -> RedisFacts:
    key = rate_window_key(now, settings.timezone)
    facts = RedisFacts(address=redis_address(settings), rate_key=key)
    client = redis.Redis.from_url(
        settings.redis_connection_url,
        socket_connect_timeout=PART_TIMEOUT / 2,
        socket_timeout=PART_TIMEOUT / 2,
    )
    try:
        client.ping()
        value = client.get(key)
        facts.rate_count = int(value) if value is not None else None
        ttl = int(client.ttl(OLD_ENGINE_LOCK))
        facts.old_engine_lock_ttl = None if ttl == -2 else ttl
    except (redis.RedisError, OSError, ValueError) as exc:
        facts.error = first_line(exc)
    finally:
        client.close()
    return facts


# --- Temporal --------------------------------------------------------------------------------


async def look_at_temporal(settings: Settings) -> TemporalFacts:
    facts = TemporalFacts(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.task_queue,
        poller_gone_after=timedelta(seconds=settings.doctor_poller_gone_seconds),
    )
    try:
        await asyncio.wait_for(_fill_temporal(settings, facts), timeout=PART_TIMEOUT)
    except TimeoutError:
        facts.error = f"no answer within {PART_TIMEOUT:.0f}s"
    except (RuntimeError, RPCError) as exc:
        facts.error = first_line(exc)
    return facts


async def _fill_temporal(settings: Settings, facts: TemporalFacts) -> None:
    client = await temporal_client.connect(settings)
    facts.workflow_pollers = await _pollers(
        client, settings, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    )
    facts.activity_pollers = await _pollers(
        client, settings, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
    facts.schedules = [await describe_schedule(client, schedule_id) for schedule_id in SCHEDULE_IDS]


async def _pollers(
    client: Client, settings: Settings, kind: TaskQueueType.ValueType
) -> list[Poller]:
    return await task_queue_pollers(client, settings.temporal_namespace, settings.task_queue, kind)


async def task_queue_pollers(
    client: Client, namespace: str, task_queue: str, kind: TaskQueueType.ValueType
) -> list[Poller]:
    """Who the server lists as polling ``task_queue`` for ``kind`` tasks, and when last
    (a worker that stopped stays listed for minutes: see ``checks.live_pollers``)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
        ),
        timeout=timedelta(seconds=PART_TIMEOUT),
    )
    return [
        Poller(
            poller.identity,
            poller.last_access_time.ToDatetime(tzinfo=UTC)
            if poller.HasField("last_access_time")
            else None,
        )
        for poller in response.pollers
    ]


async def describe_schedule(client: Client, schedule_id: str) -> ScheduleFacts:
    try:
        description = await client.get_schedule_handle(schedule_id).describe(
            rpc_timeout=timedelta(seconds=PART_TIMEOUT)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return ScheduleFacts(schedule_id, found=False)
        raise
    intervals: list[ScheduleIntervalSpec] = list(description.schedule.spec.intervals)
    recent = description.info.recent_actions
    return ScheduleFacts(
        schedule_id=schedule_id,
        paused=description.schedule.state.paused,
        every=intervals[0].every if intervals else None,
        last_run=max((action.started_at for action in recent), default=None),
        next_run=min(description.info.next_action_times, default=None),
    )


async def _described_campaigns(
    settings: Settings, database: DatabaseFacts
) -> tuple[list[FailingWorkflowTask], list[Drift]]:
    """Campaign workflows whose workflow task is failing and retried, and campaigns whose
    row and workflow disagree (the first MAX_DESCRIBED_CAMPAIGNS active ones)."""
    failing: list[FailingWorkflowTask] = []
    drift: list[Drift] = []

    async def describe_all() -> None:
        client = await temporal_client.connect(settings)
        for campaign in database.campaigns[:MAX_DESCRIBED_CAMPAIGNS]:
            handle = client.get_workflow_handle(workflow_id_for(campaign.campaign_id))
            try:
                description = await handle.describe(rpc_timeout=timedelta(seconds=PART_TIMEOUT))
            except RPCError:
                description = None
            state = _workflow_state(description)
            found = _drift(campaign, state, database.crm_requests)
            if found is not None:
                drift.append(found)
            if description is None:
                continue
            pending = description.raw_description.pending_workflow_task
            if (
                description.raw_description.HasField("pending_workflow_task")
                and pending.attempt > 1
            ):
                failing.append(FailingWorkflowTask(campaign.campaign_id, pending.attempt))

    with contextlib.suppress(TimeoutError, RuntimeError, RPCError):
        await asyncio.wait_for(describe_all(), timeout=PART_TIMEOUT)
    return failing, drift


def _workflow_state(description: WorkflowExecutionDescription | None) -> str | None:
    """The run's MailerStatus, or ``None`` when no run is open."""
    if description is None or description.status != WorkflowExecutionStatus.RUNNING:
        return None
    return description.typed_search_attributes.get(MAILER_STATUS) or WorkflowState.STARTING


def _drift(campaign: CampaignFacts, state: str | None, requests_waiting: int) -> Drift | None:
    """What the row asks of the run that nothing is about to do: a CRM request waiting is
    the dispatcher's within seconds, so only a disagreement no request explains counts."""
    if requests_waiting:
        return None
    row = CampaignRow(
        campaign.campaign_id,
        campaign.status,
        campaign.queue_status,
        defer_reason=campaign.defer_reason,
        deferred_until=campaign.deferred_until,
        consecutive_transient_errors=campaign.consecutive_transient_errors,
        pending=campaign.pending,
    )
    progress = None if state is None else Progress(campaign.campaign_id, WorkflowState(state))
    wanted = decide(row, progress)
    if wanted == Action.NOTHING or (wanted == Action.RESUME and state == WorkflowState.DEFERRED):
        # A deferred run under an emptied row is the playbook's resume SQL, acted on by
        # the dispatcher or reconcile; not drift in itself.
        return None
    return Drift(campaign.campaign_id, campaign.status, state or "gone", str(wanted))
