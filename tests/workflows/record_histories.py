"""Record histories of the current CampaignWorkflow (and the dispatcher) for the replay test.

``python -m tests.workflows.record_histories`` runs the production workflow and activities
through the scenarios a running campaign can be in — deferrals, pause and resume, the
circuit breaker, a cancel, continue-as-new — on the time-skipping server against real
PostgreSQL, Redis and SMTP, and writes each history to ``histories/``. Re-record only after
a change that is safe for campaigns already running (see docs/engine.md: ``workflow.patched``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from mailer.runtime.worker import ensure_dispatcher, ensure_search_attributes
from mailer.stack import seed_data
from mailer.stack.binaries import temporal_test_server_binary
from mailer.stack.smtp_sink import FailureRule, SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer, StubAccount
from mailer.stack.throwaway import postgres_cluster, redis_server
from tests.support.crm import crm_queue
from tests.support.harness import (
    Harness,
    finished,
    make_settings,
    new_task_queue,
    skip_to_monday_9,
    state_is,
)
from workflows.campaign import CampaignWorkflow
from workflows.maintenance import DispatcherWorkflow, dispatcher_workflow_id

HISTORIES = Path(__file__).parent / "histories"
Handle = WorkflowHandle[Any, Any]


async def deferrals_pause_resume(harness: Harness, env: WorkflowEnvironment) -> Handle:
    """Outside hours, then sending, paused and resumed, rate-deferred, finished."""
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 30)
    async with harness.worker(rate_per_hour=20, send_batch_size=10):
        handle = await harness.start(campaign)
        await _until(lambda: state_is(handle, "deferred"))
        await handle.signal(CampaignWorkflow.pause)
        await _until(lambda: state_is(handle, "paused"))
        await handle.signal(CampaignWorkflow.resume)
        await finished(handle)
    return handle


async def breaker_then_cancel(harness: Harness, env: WorkflowEnvironment) -> Handle:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 10)
    harness.sink.handler.rules = [FailureRule("all", 451)]
    async with harness.worker(circuit_breaker_threshold=2):
        handle = await harness.start(campaign)
        await env.sleep(timedelta(minutes=10))
        await _until(lambda: state_is(handle, "paused"))
        await handle.signal(CampaignWorkflow.cancel)
        await finished(handle)
    harness.sink.handler.rules = []
    return handle


async def cancelled_through_temporal(harness: Harness, env: WorkflowEnvironment) -> Handle:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 5)
    async with harness.worker(working_hours_start=9, working_hours_end=10):
        await env.sleep(timedelta(hours=2))  # after hours: deferred
        handle = await harness.start(campaign)
        await _until(lambda: state_is(handle, "deferred"))
        await handle.cancel()
        await _until(lambda: _closed(handle))
    return handle


async def continue_as_new(harness: Harness, env: WorkflowEnvironment) -> Handle:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 60)
    async with harness.worker(send_batch_size=1, continue_as_new_events=200):
        handle = await harness.start(campaign)
        await finished(handle)
    # The first run, which ended by continuing as new.
    first = (await handle.fetch_history()).events[0]
    run_id = first.workflow_execution_started_event_attributes.first_execution_run_id
    return harness.client.get_workflow_handle(handle.id, run_id=run_id)


async def domain_paced(harness: Harness, env: WorkflowEnvironment) -> Handle:
    """Per-domain pacing: other domains go, then minute-long deferrals for the paced one."""
    emails = [f"m{i}@mail.ru" for i in range(5)] + ["g0@gmail.com", "g1@gmail.com"]
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), emails)
    async with harness.worker(domain_rate_per_minute="mail.ru=2", send_batch_size=10):
        handle = await harness.start(campaign)
        await finished(handle)
    return handle


async def dispatcher_turns(harness: Harness, env: WorkflowEnvironment) -> Handle:
    """The tables' dispatcher: idle turns, then a campaign the CRM queued, woken (as a
    worker's listener wakes it) and started."""
    campaign = harness.ready_campaign(3)
    async with harness.worker():
        await ensure_dispatcher(harness.client, harness.task_queue)
        handle = harness.client.get_workflow_handle(dispatcher_workflow_id(harness.task_queue))
        await env.sleep(timedelta(seconds=25))
        crm_queue(harness, campaign)
        await handle.signal(DispatcherWorkflow.wake)
        await _until(lambda: _started(harness, campaign))
        await env.sleep(timedelta(seconds=25))
    return handle


SCENARIOS: dict[str, Callable[[Harness, WorkflowEnvironment], Awaitable[Handle]]] = {
    "domain_paced": domain_paced,
    "deferrals_pause_resume": deferrals_pause_resume,
    "breaker_then_cancel": breaker_then_cancel,
    "cancelled_through_temporal": cancelled_through_temporal,
    "continue_as_new": continue_as_new,
    "dispatcher_turns": dispatcher_turns,
}


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def _started(harness: Harness, campaign: str) -> bool:
    return harness.queue_row(campaign).get("status") != "pending"


async def _closed(handle: Handle) -> bool:
    history = await handle.fetch_history()
    return history.events[-1].HasField("workflow_execution_canceled_event_attributes")


async def main(names: list[str], suffix: str = "") -> None:
    """Record the named scenarios (all of them without names). Histories recorded by older
    code are worth keeping: the replay test then checks the current code against them, and
    a ``suffix`` (``--suffix=-local-ledger``) records the current code's beside them."""
    HISTORIES.mkdir(exist_ok=True)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"no such scenario: {', '.join(sorted(unknown))}")
    with postgres_cluster() as cluster, redis_server() as redis:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=temporal_test_server_binary()
        )
        await ensure_search_attributes(env.client, env.client.namespace)
        stub = SmtpBzStubServer(account=StubAccount(api_key="test-key", quota=1_000_000)).start()
        try:
            for name, scenario in SCENARIOS.items():
                if names and name not in names:
                    continue
                with SmtpSink() as sink:
                    url = cluster.new_database()
                    harness = Harness(
                        client=env.client,
                        settings=make_settings(url, redis.url, stub.base_url),
                        sink=sink,
                        stub=stub,
                        database_url=url,
                        task_queue=new_task_queue(),
                    )
                    await skip_to_monday_9(env)
                    handle = await scenario(harness, env)
                    history = await handle.fetch_history()
                    (HISTORIES / f"{name}{suffix}.json").write_text(history.to_json())
                    print(f"{name}{suffix}: {len(history.events)} events")
        finally:
            stub.stop()
            await env.shutdown()


if __name__ == "__main__":
    flags = [arg for arg in sys.argv[1:] if arg.startswith("--suffix=")]
    scenarios = [arg for arg in sys.argv[1:] if arg not in flags]
    asyncio.run(main(scenarios, flags[-1].removeprefix("--suffix=") if flags else ""))
