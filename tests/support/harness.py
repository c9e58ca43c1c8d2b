"""Running the real CampaignWorkflow and activities against real servers in tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconciliation import running_campaign_workflows
from mailer.core.settings import Settings, load_settings
from mailer.runtime.worker import build_worker
from mailer.stack import seed_data
from mailer.stack.seed_data import sql_execute, sql_rows
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignInput, CampaignResult, Progress

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: The variable (or ``pytest --harness-timezone``) naming the zone every test's mailer runs in.
#: Shifting it moves the wall clock's hour as mailer sees it, which is how the suite proves it
#: passes at any hour: run it once in a zone where it is now inside 09-18 and once outside.
ZONE_VARIABLE = "MAILER_TEST_TIMEZONE"
DEFAULT_ZONE = "Europe/Moscow"

#: The sending window of tests where the clock of day is not what they test.
ALWAYS_OPEN = {"working_hours_start": 0, "working_hours_end": 24}

# How long a Temporal server of the tests may take to start: the SDK waits 5 s by default,
# which a loaded two-core machine (two test processes, a dev server with its Web UI) exceeds.
SERVER_STARTUP = timedelta(seconds=60)


def zone_name() -> str:
    """The zone the harness runs mailer in (MAILER_TIMEZONE of every settings and process)."""
    return os.environ.get(ZONE_VARIABLE) or DEFAULT_ZONE


def zone() -> ZoneInfo:
    return ZoneInfo(zone_name())


def next_monday_9(after: datetime) -> datetime:
    """The first Monday 09:00 in the harness's zone strictly after ``after``."""
    local = after.astimezone(zone())
    day = local.date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=zone())


async def skip_to_monday_9(env: WorkflowEnvironment) -> None:
    """Advance the time-skipping server to the next Monday 09:00 in the harness's zone."""
    await skip_to(env, next_monday_9(await env.get_current_time()))


async def state_is(handle: WorkflowHandle[CampaignWorkflow, CampaignResult], state: str) -> bool:
    return (await handle.query(CampaignWorkflow.progress)).state == state


async def listed_as(client: Client, campaign: str, state: str) -> bool:
    """Whether reconcile's visibility listing shows the campaign's workflow in ``state``."""
    running = await running_campaign_workflows(client) or {}
    return running.get(workflow_id_for(campaign)) == state


async def skip_to(env: WorkflowEnvironment, when: datetime) -> None:
    """Advance the time-skipping server's clock to ``when``."""
    now = await env.get_current_time()
    if when > now:
        await env.sleep(when - now)


@dataclass
class Harness:
    client: Client
    settings: Settings
    sink: SmtpSink
    stub: SmtpBzStubServer
    database_url: str
    task_queue: str

    def worker(self, **overrides: object) -> Worker:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return build_worker(self.client, settings, task_queue=self.task_queue)

    async def start(self, campaign_id: str) -> WorkflowHandle[CampaignWorkflow, CampaignResult]:
        return await start_campaign(self.client, campaign_id, self.task_queue)

    def add_sender(
        self,
        *,
        quota: int = 1_000_000,
        daily_limit: int = 0,
        smtp_port: int | None = None,
        **account: object,
    ) -> int:
        """A creator, the account pointing at this test's sink (or ``smtp_port``), and the
        quota; the user id."""
        url = self.database_url
        user = seed_data.add_user(url)
        port = smtp_port or self.sink.port
        seed_data.set_account(url, smtp_port=port, daily_limit=daily_limit, **account)  # type: ignore[arg-type]
        seed_data.set_quota(url, quota)
        return user

    def ready_campaign(self, recipients: int) -> str:
        """A new sender with ample quota and one ready campaign of ``recipients``; its id."""
        return seed_data.add_campaign(self.database_url, self.add_sender(), recipients)

    def sql(self, query: str, **params: object) -> list[tuple[object, ...]]:
        return sql_rows(self.database_url, query, **params)

    def sql_exec(self, statement: str, **params: object) -> None:
        sql_execute(self.database_url, statement, **params)

    def sent_times(self, campaign_id: str | None = None) -> list[datetime]:
        where = "AND campaign_id = :c" if campaign_id else ""
        rows = self.sql(
            f"SELECT created_at FROM mailer_sendlog WHERE status = 'sent' {where} ORDER BY id",
            c=campaign_id,
        )
        return [row[0].astimezone(zone()) for row in rows]  # type: ignore[attr-defined]

    def queue_row(self, campaign_id: str) -> dict[str, object]:
        rows = self.sql(
            "SELECT q.status, q.defer_reason, q.deferred_until, q.consecutive_transient_errors, "
            "q.last_error, c.status FROM mailer_campaignqueue q JOIN mailer_campaign c "
            "ON c.id = q.campaign_id WHERE q.campaign_id = :c",
            c=campaign_id,
        )
        if not rows:
            return {}
        status, reason, until, errors, last_error, campaign_status = rows[0]
        return {
            "status": status,
            "defer_reason": reason,
            "deferred_until": until,
            "consecutive_transient_errors": errors,
            "last_error": last_error,
            "campaign_status": campaign_status,
        }


def on_the_dev_server(
    client: Client, database_url: str, redis_url: str, sink: SmtpSink, stub: SmtpBzStubServer
) -> Harness:
    """A harness on the dev server, whose clock is the wall clock: sending is open round the
    clock unless a test states the window it needs."""
    return Harness(
        client=client,
        settings=make_settings(database_url, redis_url, stub.base_url, **ALWAYS_OPEN),
        sink=sink,
        stub=stub,
        database_url=database_url,
        task_queue=new_task_queue(),
    )


async def start_campaign(
    client: Client, campaign_id: str, task_queue: str
) -> WorkflowHandle[CampaignWorkflow, CampaignResult]:
    """Start the campaign's workflow as the CLI does (id ``campaign-<uuid>``)."""
    return await client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(campaign_id),
        id=workflow_id_for(campaign_id),
        task_queue=task_queue,
    )


def make_settings(database_url: str, redis_url: str, api_url: str, **overrides: object) -> Settings:
    """Settings on these servers, in the harness's zone; the seed's 09-18 unless overridden."""
    # Sandboxed, unlike production: a workflow calling datetime.now(), random or I/O fails here.
    values: dict[str, object] = {"timezone": zone_name(), "workflow_sandbox": True, **overrides}
    return load_settings(
        database_url=database_url, redis_url=redis_url, smtp_bz_api_url=api_url, **values
    )


async def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` seconds until truthy, failing
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def closed_at(handle: WorkflowHandle[CampaignWorkflow, CampaignResult]) -> datetime:
    """When the (last run of the) workflow closed, in the harness's zone, from its history."""
    history = await handle.fetch_history()
    return history.events[-1].event_time.ToDatetime(tzinfo=zone())


#: How long a test waits for a workflow's result by default (real seconds; the time-skipping
#: server skips its timers while the result is awaited).
RESULT_TIMEOUT = 120.0


async def finished(handle: WorkflowHandle[Any, T], *, timeout: float = RESULT_TIMEOUT) -> T:
    """The workflow's result, or an assertion naming its state if it does not close within
    ``timeout`` seconds (a campaign deferred until tomorrow fails here, not at the suite's
    end)."""
    try:
        async with asyncio.timeout(timeout):
            return await handle.result()
    except TimeoutError:
        raise AssertionError(
            f"{handle.id} did not finish within {timeout:.0f}s: {await _describe(handle)}"
        ) from None


async def _describe(handle: WorkflowHandle[Any, Any]) -> str:
    """What the workflow is doing, as well as can be told (the progress query of a campaign,
    else its status)."""
    try:
        async with asyncio.timeout(5):
            state = await handle.query(CampaignWorkflow.progress)
        return (
            f"state={state.state} pause_reason={state.pause_reason!r} "
            f"defer_reason={state.defer_reason} "
            f"deferred_until={state.deferred_until} sent={state.sent} pending={state.pending}"
        )
    except Exception:  # not a campaign, or no worker to answer: say what the server knows
        try:
            async with asyncio.timeout(5):
                description = await handle.describe()
            return f"status={description.status}"
        except Exception as exc:
            return f"(not described: {exc!r})"


async def progress(handle: WorkflowHandle[CampaignWorkflow, CampaignResult]) -> Progress:
    return await handle.query(CampaignWorkflow.progress)


async def progress_past(
    handle: WorkflowHandle[CampaignWorkflow, CampaignResult], *passing: str, timeout: float = 30
) -> Progress:
    """The progress once its state is none of ``passing`` (say, past ``starting``), polled
    for at most ``timeout`` seconds."""
    found: list[Progress] = []

    async def moved_on() -> bool:
        found[:] = [await progress(handle)]
        return found[0].state not in passing

    await wait_for(moved_on, timeout=timeout, what=f"{handle.id} past {', '.join(passing)}")
    return found[0]


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    async with worker:
        yield worker


def new_task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def process_env(harness: Harness, **overrides: str) -> dict[str, str]:
    """The environment of a ``mailer`` or ``worker`` process on this harness's servers."""
    return {
        **os.environ,
        "MAILER_ENV_FILES": "",
        "MAILER_DATABASE_URL": harness.database_url,
        "MAILER_REDIS_URL": harness.settings.redis_connection_url,
        "MAILER_TEMPORAL_ADDRESS": address(harness.client),
        "MAILER_TASK_QUEUE": harness.task_queue,
        "MAILER_SMTP_BZ_API_URL": harness.stub.base_url,
        "MAILER_TIMEZONE": zone_name(),
        # A process's clock of day is not what these tests test: they state the window.
        "MAILER_WORKING_HOURS_START": "0",
        "MAILER_WORKING_HOURS_END": "24",
        **overrides,
    }


async def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m mailer.runtime.probe`` as a container's healthcheck runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailer.runtime.probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def address(client: Client) -> str:
    """The Temporal frontend ``client`` talks to (for a subprocess's settings)."""
    return client.service_client.config.target_host


def hours_excluding_now() -> tuple[int, int]:
    """A one-hour sending window that contains neither the current hour of the harness's zone
    nor the next (so a test running across the hour's end still sees it closed)."""
    hour = datetime.now(zone()).hour
    return (hour + 2, hour + 3) if hour < 21 else (hour - 3, hour - 2)


async def cli(
    harness: Harness, *args: str, env_overrides: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python starter.py ARGS`` in a subprocess on this harness's servers (a worker keeps
    running meanwhile)."""
    env = process_env(harness, **(env_overrides or {}))
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def recipient_rows(harness: Harness, campaign: str) -> dict[str, tuple[object, ...]]:
    """Each recipient's (status, attempts, error) by address."""
    rows = harness.sql(
        "SELECT email, status, attempts, error FROM mailer_campaignrecipient "
        "WHERE campaign_id = :c ORDER BY id",
        c=campaign,
    )
    return {str(row[0]): row[1:] for row in rows}
