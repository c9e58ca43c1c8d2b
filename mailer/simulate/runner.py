"""Run campaigns through simulated time on throwaway servers, with the production code.

Only the servers are throwaway (Temporal's time-skipping server, a PostgreSQL cluster,
Redis, the fakes of :mod:`mailer.simulate.fakes`); the workflow, the gates and the
activities are the ones the worker runs.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.calendar_days import special_dates
from db.engine import get_engine, session_scope
from db.models import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    GlobalMailAccount,
    RecipientStatus,
    SendLog,
    SmtpBzQuota,
    User,
)
from db.queries import recipient_domain
from mailer.core.settings import Settings
from mailer.runtime.worker import build_worker, ensure_search_attributes
from mailer.simulate.fakes import SimulatedProvider, SimulatedSmtp
from mailer.simulate.options import FailRule, Refill, SimulationOptions
from mailer.simulate.servers import ThrowawayServers
from mailer.stack.binaries import temporal_test_server_binary
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignInput, RecordStateInput
from workflows.states import FINAL_WORKFLOW_STATES, SendLogStatus, WorkflowState

# Nothing more happens to a campaign in these states without an operator.
SETTLED_STATES = (*FINAL_WORKFLOW_STATES, WorkflowState.PAUSED)

# How far simulated time moves between checks for "all finished or paused" (the timers
# inside fire at their exact times whatever the step).
STEP = timedelta(days=1)
# Without --until, a forecast looks this far ahead at most, and stops earlier when nothing
# has been sent for STALL with no refill or failure window still to come.
HORIZON = timedelta(days=366)
STALL = timedelta(days=8)
# With a calendar, a quiet spell may be holidays (Russia's New Year: 12 days), not a stall.
STALL_WITH_CALENDAR = timedelta(days=30)
ADVANCE_RPC_TIMEOUT = timedelta(hours=2)


@dataclass
class RecordedState:
    """One ``record_state`` call of one campaign, read back from its workflow history."""

    campaign: int
    record: RecordStateInput


@dataclass
class RawOutcome:
    """What the run produced, in simulated time (still shifted; see ``shift``)."""

    campaign_ids: list[str]
    states: list[WorkflowState]
    records: list[RecordedState]
    shift: timedelta
    sends: list[tuple[datetime, str]]  # (created_at, status)
    wall_seconds: float
    domains: list[DomainOutcome] = field(default_factory=list)
    zones: list[ZoneOutcome] = field(default_factory=list)


@dataclass(frozen=True)
class ZoneOutcome:
    """One recipients' time zone: what was sent, what still waits, and the first and last
    send (shifted time)."""

    zone: str
    sent: int
    pending: int
    first_sent_at: datetime | None
    last_sent_at: datetime | None


@dataclass(frozen=True)
class DomainOutcome:
    """One recipient domain's end: what was sent, failed, still waits, how many recipients
    were refused with a 4xx on the way, and when its last message went (shifted time)."""

    domain: str
    sent: int
    failed: int
    pending: int
    waited: int
    last_sent_at: datetime | None


def quiet_runtime() -> Runtime:
    """A Temporal runtime that keeps the SDK core's warnings off the forecast's output."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )


def week_shift(start: datetime, now: datetime) -> timedelta:
    """Whole weeks to move a past start into the simulator's future.

    The time-skipping server's clock starts at the present and only moves forward; moving
    by whole weeks keeps weekdays and local times (every reported time is moved back).
    """
    margin = timedelta(minutes=1)
    if start >= now + margin:
        return timedelta(0)
    weeks = math.ceil((now + margin - start) / timedelta(days=7))
    return timedelta(days=7 * weeks)


def seed(url: str, options: SimulationOptions, smtp_port: int) -> list[str]:
    """The simulated world: one creator, the account, the quota, K campaigns of N."""
    with session_scope(url) as session:
        user = User(username="simulated-creator")
        session.add(user)
        session.add(
            GlobalMailAccount(
                id=1,
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                smtp_tls="none",
                from_email="simulation@example.invalid",
                from_name="Simulation",
                per_user_daily_limit=options.daily_limit,
                smtp_bz_api_key="simulation",
            )
        )
        session.execute(
            text("UPDATE mailer_smtpbzquota SET emails_available = :n, emails_limit = :n"),
            {"n": options.quota},
        )
        session.flush()
        ids = []
        for index in range(options.campaigns):
            campaign = Campaign(
                id=uuid.uuid4(),
                name=f"simulated campaign {index}",
                status=CampaignStatus.READY.value,
                subject="Simulated {{ name }}",
                text_body="Hello {{ name }}",
                created_by_id=user.id,
                total_recipients=options.recipients,
            )
            session.add(campaign)
            session.flush()
            _copy_recipients(
                session,
                campaign.id,
                (
                    (f"r{index}-{i}@{domain}", f"R{i}", zone)
                    for i, (domain, zone) in enumerate(
                        zip(
                            interleaved(options.domains, options.recipients),
                            interleaved(options.zones, options.recipients)
                            if options.zones
                            else [""] * options.recipients,
                            strict=True,
                        )
                    )
                ),
            )
            ids.append(str(campaign.id))
    return ids


def _copy_recipients(
    session: Session, campaign_id: uuid.UUID, rows: Iterable[tuple[str, str, str]]
) -> None:
    """The campaign's recipients (address, name — also their one variable —, zone) through
    one COPY on the session's connection and transaction: 0.14 s for 10,000 where the ORM's
    multi-row INSERT took 0.46 (the other columns take their defaults)."""
    columns = "campaign_id, email, name, variables, timezone"
    psycopg_connection = session.connection().connection.driver_connection
    assert psycopg_connection is not None  # checked out by the session: it has one
    statement = f"COPY {CampaignRecipient.__tablename__} ({columns}) FROM STDIN"
    with psycopg_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for email, name, zone in rows:
            copy.write_row((campaign_id, email, name, Jsonb({"name": name}), zone))


def interleaved(domains: tuple[tuple[str, int], ...], count: int) -> list[str]:
    """``count`` domains in their shares, spread evenly (as an address book mixes them)."""
    total = sum(weight for _, weight in domains)
    taken = [0] * len(domains)
    chosen = []
    for i in range(count):
        behind = [weight * (i + 1) / total - taken[k] for k, (_, weight) in enumerate(domains)]
        k = behind.index(max(behind))
        taken[k] += 1
        chosen.append(domains[k][0])
    return chosen


def settings_for(
    options: SimulationOptions, base: Settings, **connections: str | Path | None
) -> Settings:
    start, end = options.working_hours
    return base.model_copy(
        update={
            **connections,
            "working_days": options.working_days,
            "recipient_timezones": bool(options.zones),
            "timezone": options.timezone,
            "working_hours_start": start,
            "working_hours_end": end,
            "rate_per_hour": options.rate_per_hour,
            "domain_rate_per_minute": options.domain_rate_per_minute,
            "max_campaign_recipients": max(base.max_campaign_recipients, options.recipients),
            # One creator starts K campaigns at once: the start throttle is not the question.
            "throttle_campaign_start_per_hour": max(
                base.throttle_campaign_start_per_hour, options.campaigns
            ),
        }
    )


def shifted_dates(options: SimulationOptions, shift: timedelta) -> Path | None:
    """The simulation's holidays and transferred days as a dates file, moved with its start.

    The time-skipping server runs in the future by whole weeks (:func:`week_shift`), and a
    holiday is a date, not a weekday: the dates of the real start's year and the next are
    moved by the same shift, written to a file the simulated worker reads."""
    if not options.holidays and options.holidays_file is None:
        return None
    closed, opened = special_dates(options.holidays, options.holidays_file, options.start.date())
    lines = [
        *(f"{date.fromisoformat(day) + shift} " for day in closed),
        *(f"{date.fromisoformat(day) + shift} working" for day in opened),
    ]
    handle, name = tempfile.mkstemp(prefix="mailer-simulated-dates-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("\n".join(line.strip() for line in lines) + "\n")
    return Path(name)


def _shifted(options: SimulationOptions, shift: timedelta) -> SimulationOptions:
    def rule(r: FailRule) -> FailRule:
        if r.start is None or r.end is None:
            return r
        return replace(r, start=r.start + shift, end=r.end + shift)

    return replace(
        options,
        start=options.start + shift,
        refills=tuple(Refill(r.available, r.at + shift) for r in options.refills),
        fail_rules=tuple(rule(r) for r in options.fail_rules),
        until=options.until + shift if options.until else None,
    )


async def _states(client: Client, campaign_ids: list[str]) -> list[WorkflowState]:
    states = []
    for campaign_id in campaign_ids:
        handle = client.get_workflow_handle(workflow_id_for(campaign_id))
        states.append((await handle.query(CampaignWorkflow.progress)).state)
    return states


class RecordedStates(Interceptor):
    """Every ``record_state`` the simulated worker carries out, in order.

    The simulation's own worker runs them, so it sees them all as they happen, in every
    run of every campaign, without reading the histories back."""

    def __init__(self, campaign_ids: list[str]) -> None:
        self.index = {campaign_id: i for i, campaign_id in enumerate(campaign_ids)}
        self.found: list[RecordedState] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RecordStateWatch(next, self)


class _RecordStateWatch(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, recorded: RecordedStates) -> None:
        super().__init__(next)
        self.recorded = recorded

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        request = input.args[0] if input.args else None
        if isinstance(request, RecordStateInput):  # only record_state takes one
            index = self.recorded.index[request.campaign_id]
            self.recorded.found.append(RecordedState(index, request))
        return result


async def run(
    options: SimulationOptions, base: Settings, servers: ThrowawayServers | None = None
) -> RawOutcome:
    """Simulate; returns raw results for :mod:`mailer.simulate.report`.

    ``servers`` already starting (the CLI starts them before this module loads) are used
    and left to their owner to stop; without them the run starts and stops its own."""
    if servers is None:
        with ThrowawayServers() as own:
            return await run(options, base, own)
    # Temporal's server starts while PostgreSQL and Redis finish starting in their threads.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_binary(), runtime=quiet_runtime()
    )
    url = None
    try:
        urls = await servers.ready()
        url = urls.database_url
        return await _run_in(env, url, urls.redis_url, options, base, servers.started_at)
    finally:
        await env.shutdown()
        if url is not None:
            get_engine(url).dispose()


async def _run_in(
    env: WorkflowEnvironment,
    url: str,
    redis_url: str,
    options: SimulationOptions,
    base: Settings,
    started: float,
) -> RawOutcome:
    shift = week_shift(options.start, await env.get_current_time())
    shifted = _shifted(options, shift)
    await ensure_search_attributes(env.client, env.client.namespace)
    engine = get_engine(url)
    smtp = SimulatedSmtp(shifted.fail_rules, env.get_current_time)
    smtp_port = await smtp.start()
    provider = _provider(env, engine, shifted).start()
    calendar = shifted_dates(options, shift)
    try:
        campaign_ids = seed(url, shifted, smtp_port)
        settings = settings_for(
            shifted,
            base,
            database_url=url,
            redis_url=redis_url,
            smtp_bz_api_url=provider.base_url,
            holidays="",
            holidays_file=calendar,
        )
        states, records = await _simulate(env, engine, settings, shifted, campaign_ids)
    finally:
        provider.stop()
        await smtp.stop()
        if calendar is not None:
            calendar.unlink(missing_ok=True)
    return RawOutcome(
        campaign_ids=campaign_ids,
        states=states,
        records=records,
        shift=shift,
        sends=_sends(engine),
        wall_seconds=time.perf_counter() - started,
        domains=_domains(engine),
        zones=_zones(engine) if options.zones else [],
    )


def _provider(
    env: WorkflowEnvironment, engine: Engine, options: SimulationOptions
) -> SimulatedProvider:
    """The smtp.bz API as the simulated clock sees it: refills, and what was sent."""
    loop = asyncio.get_running_loop()

    def now_threadsafe() -> datetime:
        return asyncio.run_coroutine_threadsafe(env.get_current_time(), loop).result(30)

    def database_available() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(select(SmtpBzQuota.emails_available)) or 0)

    def sent_since(moment: datetime) -> int:
        with engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(SendLog)
                .where(SendLog.status == SendLogStatus.SENT, SendLog.created_at >= moment)
            )
            return int(conn.scalar(query) or 0)

    return SimulatedProvider(
        options.refills,
        now=now_threadsafe,
        database_available=database_available,
        sent_since=sent_since,
    )


async def _simulate(
    env: WorkflowEnvironment,
    engine: Engine,
    settings: Settings,
    options: SimulationOptions,
    campaign_ids: list[str],
) -> tuple[list[WorkflowState], list[RecordedState]]:
    """Start the campaigns at the simulated start and step time until they settle."""
    current = await env.get_current_time()
    if options.start > current:
        await advance(env, options.start - current)
    queue = f"simulation-{uuid.uuid4().hex[:8]}"
    recorded = RecordedStates(campaign_ids)
    async with build_worker(
        env.client,
        settings,
        task_queue=queue,
        interceptors=[recorded],
        unversioned_build_id="mailer-simulate",
    ):
        for campaign_id in campaign_ids:
            await env.client.start_workflow(
                CampaignWorkflow.run,
                CampaignInput(campaign_id),
                id=workflow_id_for(campaign_id),
                task_queue=queue,
            )
        states = await _step_until_settled(
            env, campaign_ids, options, handled=lambda: _handled(engine)
        )
    return states, recorded.found


def _domains(engine: Engine) -> list[DomainOutcome]:
    domain = recipient_domain()
    query = (
        select(
            domain,
            func.count().filter(CampaignRecipient.status == RecipientStatus.SENT.value),
            func.count().filter(CampaignRecipient.status == RecipientStatus.FAILED.value),
            func.count().filter(CampaignRecipient.status == RecipientStatus.PENDING.value),
            func.count().filter(CampaignRecipient.deferred_since.is_not(None)),
            func.max(CampaignRecipient.sent_at),
        )
        .group_by(domain)
        .order_by(domain)
    )
    with engine.connect() as conn:
        return [DomainOutcome(*row) for row in conn.execute(query).all()]


def _zones(engine: Engine) -> list[ZoneOutcome]:
    query = (
        select(
            CampaignRecipient.timezone,
            func.count().filter(CampaignRecipient.status == RecipientStatus.SENT.value),
            func.count().filter(CampaignRecipient.status == RecipientStatus.PENDING.value),
            func.min(CampaignRecipient.sent_at),
            func.max(CampaignRecipient.sent_at),
        )
        .group_by(CampaignRecipient.timezone)
        .order_by(CampaignRecipient.timezone)
    )
    with engine.connect() as conn:
        return [ZoneOutcome(*row) for row in conn.execute(query).all()]


def _sends(engine: Engine) -> list[tuple[datetime, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(SendLog.created_at, SendLog.status).order_by(SendLog.id))
        return [(created_at, status) for created_at, status in rows.all()]


def _handled(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(SendLog)) or 0)


async def _step_until_settled(
    env: WorkflowEnvironment,
    campaign_ids: list[str],
    options: SimulationOptions,
    *,
    handled: Callable[[], int],
) -> list[WorkflowState]:
    """Advance simulated time a step at a time until every campaign is finished or paused
    (nothing more would happen without an operator), ``until`` is reached, or nothing has
    moved for ``STALL`` with nothing scheduled to change that (say, quota that never comes
    back); within ``HORIZON`` of the start in any case."""
    until = options.until or options.start + HORIZON
    last_handled, last_change = -1, await env.get_current_time()
    while True:
        states = await _states(env.client, campaign_ids)
        if all(state in SETTLED_STATES for state in states):
            return states
        now = await env.get_current_time()
        if now >= until:
            return states
        count = handled()
        if count != last_handled:
            last_handled, last_change = count, now
        elif now - last_change >= _stall(options) and not _change_ahead(options, now):
            return states
        await advance(env, min(STEP, until - now))


async def advance(env: WorkflowEnvironment, duration: timedelta) -> None:
    """Let simulated time move on by ``duration``.

    Like ``env.sleep``, but the call may take long in real time (a busy simulated hour is
    real sending), so it gets a generous RPC deadline instead of the default.
    """
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(
        request, timeout=ADVANCE_RPC_TIMEOUT
    )


def _stall(options: SimulationOptions) -> timedelta:
    plain = options.working_days == "mon-sun" and not options.holidays
    return STALL if plain and options.holidays_file is None else STALL_WITH_CALENDAR


def _change_ahead(options: SimulationOptions, now: datetime) -> bool:
    """Whether a refill or the end of a failure window is still to come."""
    return any(refill.at > now for refill in options.refills) or any(
        rule.end is not None and rule.end > now for rule in options.fail_rules
    )
