"""The faults of the reliability report, one coroutine each: inject, heal, audit.

Each returns an :class:`Outcome` (a row of ``docs/reliability.md``'s table); the tests
assert on it and ``bench/chaos.py`` prints it. Sizes and outage lengths are parameters so
``make test`` can run a short version of some.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bench.faults.rig import (
    HEARTBEAT_TIMEOUT_SECONDS,
    SMTP_TIMEOUT_SECONDS,
    Outcome,
    Scenario,
    Stack,
    scenario,
    until,
)
from mailer.stack.smtp_sink import FailureRule
from workflows.campaign import CampaignWorkflow
from workflows.contracts import CampaignResult
from workflows.states import Signal

# Each message waits this long for each of the sink's replies: a campaign lasts long
# enough for faults to land in the middle of it.
STEP_DELAY_SECONDS = 0.002
# Slower for an outage of fixed length: ~30 messages a second, so the campaign outlasts it.
OUTAGE_STEP_DELAY_SECONDS = 0.01
FINISH_SECONDS = 600


def _row(
    fault: str,
    run: Scenario,
    campaigns: list[str],
    injected: int,
    recover: float,
    *,
    some_wait: bool = False,
) -> Outcome:
    """The table's row; a recipient still pending is lost unless ``some_wait`` (a window
    that leaves recipients for the next hour)."""
    audit = run.audit(campaigns)
    return Outcome(
        fault=fault,
        injected=injected,
        recipients=audit.recipients,
        delivered=audit.delivered,
        lost=audit.lost + (0 if some_wait else audit.pending),
        duplicated=audit.duplicated,
        duplicates_kept_message_id=audit.duplicates_kept_message_id,
        ledger_mismatches=audit.mismatches,
        recover_seconds=recover,
    )


async def _underway(
    run: Scenario, recipients: int
) -> tuple[str, WorkflowHandle[CampaignWorkflow, CampaignResult]]:
    """A campaign a fifth of the way through, at a pace that outlasts a 20 s outage."""
    run.handler.step_delay_seconds = OUTAGE_STEP_DELAY_SECONDS
    campaign = run.campaign(recipients)
    run.start_worker()
    handle = await run.start(campaign)
    await _received(run, recipients // 5)
    return campaign, handle


async def _received(run: Scenario, count: int) -> None:
    await until(lambda: run.received() >= count, timeout=300, what=f"{count} received")


async def _next_delivery(run: Scenario, *, timeout: float = 180) -> float:
    """Seconds until the sink receives its next message."""
    seen = run.received()
    return await until(lambda: run.received() > seen, timeout=timeout, what="the next delivery")


async def worker_killed(
    stack: Stack, *, recipients: int = 3000, kills: int = 5, **settings: object
) -> Outcome:
    """``kill -9`` of the worker ``kills`` times during one campaign, restarted each time
    (``settings``: the workers' overrides, e.g. ``send_heartbeat_timeout_seconds``)."""
    async with scenario(stack, **settings) as run:
        run.handler.step_delay_seconds = STEP_DELAY_SECONDS
        campaign = run.campaign(recipients)
        worker = run.start_worker()
        handle = await run.start(campaign)
        recover = 0.0
        for kill in range(1, kills + 1):
            mark = recipients * kill // (kills + 1)
            await _received(run, mark)
            worker.kill()
            worker = run.start_worker()
            recover = max(recover, await _next_delivery(run))
        result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        outcome = _row(f"worker `kill -9` ×{kills}", run, [campaign], kills, recover)
        outcome.notes.append(f"campaign ended {result.status}, sent {result.sent}")
        return outcome


async def temporal_restarted(stack: Stack, *, recipients: int = 2000) -> Outcome:
    """The Temporal server stopped and started again mid-campaign (its data kept)."""
    async with scenario(stack) as run:
        campaign, handle = await _underway(run, recipients)
        batches = run.worker_logs().count(" batch: ")
        stack.stop("temporal")
        stack.start("temporal")
        # The batch in flight goes on sending meanwhile; recovered once a batch scheduled
        # after the restart has finished too.
        recover = await until(
            lambda: run.worker_logs().count(" batch: ") >= batches + 2,
            timeout=180,
            what="a batch after the restart",
        )
        result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        outcome = _row("Temporal server restarted", run, [campaign], 1, recover)
        outcome.notes.append(f"campaign ended {result.status}, sent {result.sent}")
        return outcome


async def postgres_down(
    stack: Stack, *, recipients: int = 2000, outage_seconds: float = 20
) -> Outcome:
    """PostgreSQL stopped for ``outage_seconds`` mid-campaign."""
    async with scenario(stack) as run:
        campaign, handle = await _underway(run, recipients)
        stack.stop("postgres")
        await asyncio.sleep(outage_seconds)  # the outage itself
        stack.start("postgres")
        recover = await _next_delivery(run)
        result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        outcome = _row(f"PostgreSQL down {outage_seconds:.0f} s", run, [campaign], 1, recover)
        outcome.notes.append(f"campaign ended {result.status}, sent {result.sent}")
        return outcome


async def redis_down(
    stack: Stack, *, recipients: int = 2000, outage_seconds: float = 20
) -> Outcome:
    """Redis stopped for ``outage_seconds``: the limiter fails open and says so (sending
    goes on); recovered once the window has caught up with the send log, and at the end
    the hour's window equals what the send log says went out this hour."""
    async with scenario(stack) as run:
        campaign, handle = await _underway(run, recipients)
        stack.stop("redis")
        # Until a batch reserves while Redis is down (sending goes on meanwhile).
        await until(
            lambda: "Error reserving rate limit token" in run.worker_logs(),
            timeout=60,
            what="the fail-open error",
        )
        await asyncio.sleep(outage_seconds)  # the outage itself
        stack.start("redis")
        recover = await until(
            lambda: "caught up after a Redis outage" in run.worker_logs(),
            timeout=120,
            what="the window to catch up",
        )
        result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        outcome = _row(f"Redis down {outage_seconds:.0f} s", run, [campaign], 1, recover)
        window, sent = run.window_used(), run.sent_this_hour()
        outcome.notes.append(
            f"fail-open logged; window {window} vs {sent} sent this hour in the send log"
        )
        if window != sent:
            outcome.ledger_mismatches += 1
        outcome.notes.append(f"campaign ended {result.status}, sent {result.sent}")
        return outcome


async def transient_storm(stack: Stack, *, recipients: int = 300, threshold: int = 10) -> Outcome:
    """Every recipient answered 451 mid-campaign: each batch is one transient error; the
    breaker pauses the campaign at exactly ``threshold``, and ``mailer resume`` after the
    server heals finishes it."""
    async with scenario(stack, circuit_breaker_threshold=threshold) as run:
        run.handler.step_delay_seconds = STEP_DELAY_SECONDS
        campaign = run.campaign(recipients)
        run.start_worker()
        handle = await run.start(campaign)
        await until(lambda: run.received() >= recipients // 3, timeout=300, what="a third sent")
        run.handler.rules.append(FailureRule("all", 451))
        while True:
            await until(
                lambda: run.state(campaign).deferred or run.state(campaign).campaign == "paused",
                timeout=120,
                what="the campaign to defer or pause",
            )
            state = run.state(campaign)
            errors_seen = state.transient_errors
            if state.campaign == "paused":
                break
            # Each retry (after the rehearsal's short retry delay) is one more error.
            await until(
                lambda e=errors_seen: (  # type: ignore[misc]
                    run.state(campaign).transient_errors > e
                    or run.state(campaign).campaign == "paused"
                ),
                timeout=120,
                what="the next transient error",
            )
        run.handler.rules.clear()
        resumed = run.cli("resume", campaign)
        assert resumed.returncode == 0, f"mailer resume: {resumed.stdout}{resumed.stderr}"
        recover = await _next_delivery(run)
        result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        outcome = _row("451 storm, breaker, `mailer resume`", run, [campaign], errors_seen, recover)
        outcome.notes.append(
            f"paused by the breaker at {errors_seen} consecutive errors (threshold {threshold})"
        )
        if errors_seen != threshold or resumed.returncode != 0:
            outcome.ledger_mismatches += 1
            outcome.notes.append(f"`mailer resume` said: {resumed.stdout}{resumed.stderr}")
        outcome.notes.append(f"campaign ended {result.status}, sent {result.sent}")
        return outcome


async def workers_one_window(
    stack: Stack,
    *,
    workers: int = 2,
    campaigns: int = 2,
    recipients: int = 400,
    rate_per_hour: int = 500,
) -> Outcome:
    """N workers on one task queue, several campaigns, one hourly window of
    ``rate_per_hour``: no clock hour over it, no duplicates, and every worker took batches
    (the window, the quota and the claims are global, not per worker)."""
    async with scenario(stack, rate_per_hour=rate_per_hour) as run:
        run.handler.step_delay_seconds = STEP_DELAY_SECONDS
        started = [run.campaign(recipients) for _ in range(campaigns)]
        for worker in [run.start_worker() for _ in range(workers)]:
            await until(worker.polling, timeout=60, what="a worker to poll")
        handles = [await run.start(c) for c in started]

        def all_waiting_or_done() -> bool:
            states = [run.state(c) for c in started]
            return all(s.campaign == "sent" or s.defer_reason == "rate_per_hour" for s in states)

        await until(all_waiting_or_done, timeout=300, what="the hour's window to fill")
        per_hour = run.sent_per_hour()
        outcome = _row(
            f"{workers} workers, rate {rate_per_hour}/h", run, started, 0, 0.0, some_wait=True
        )
        waiting = outcome.recipients - outcome.delivered
        batches = [w.log.read_text().count(" batch: ") for w in run.workers]
        outcome.details = {"sent_per_hour": per_hour, "batches_per_worker": batches}
        outcome.notes.append(
            f"sent per clock hour {per_hour} (limit {rate_per_hour}); {waiting} wait for the "
            f"next hour; batches per worker {batches}; window {run.window_used()}"
        )
        if max(per_hour, default=0) > rate_per_hour:
            outcome.ledger_mismatches += 1
        for handle in handles:
            await _cancel_if_running(handle)
        return outcome


async def _cancel_if_running(handle: WorkflowHandle[CampaignWorkflow, CampaignResult]) -> None:
    """Cancel a campaign left waiting; one that sent everything may have closed already."""
    try:
        await handle.signal(Signal.CANCEL)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise


async def two_workers_one_window(stack: Stack) -> Outcome:
    return await workers_one_window(stack)


async def three_workers_one_window(stack: Stack) -> Outcome:
    return await workers_one_window(
        stack, workers=3, campaigns=3, recipients=300, rate_per_hour=600
    )


class _HangingServer:
    """Accepts connections and never says a word (not even the greeting)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


async def hanging_server(stack: Stack, *, recipients: int = 300) -> Outcome:
    """The SMTP server accepts the connection and then hangs, first at the greeting (a new
    connection) and then mid-transaction: each is a transient error after the SMTP
    timeout, the batch ends (nothing stays claimed or `processing`), and once the server
    answers again a wake finishes the campaign."""
    async with scenario(stack) as run:
        hanging = _HangingServer()
        try:
            run.handler.step_delay_seconds = STEP_DELAY_SECONDS
            campaign = run.campaign(recipients)
            run.start_worker()
            handle = await run.start(campaign)
            await until(lambda: run.received() >= recipients // 3, timeout=300, what="a third")
            # Mid-transaction: the sink stops answering after its greeting.
            run.handler.step_delay_seconds = 3600
            await _deferred_not_stuck(run, campaign)
            # A new connection: the server never greets.
            run.sql_exec("UPDATE mailer_globalmailaccount SET smtp_port = :p", p=hanging.port)
            run.handler.step_delay_seconds = STEP_DELAY_SECONDS
            await until(
                lambda: run.state(campaign).transient_errors >= 2,
                timeout=120,
                what="the second transient error",
            )
            await _deferred_not_stuck(run, campaign)
            run.sql_exec("UPDATE mailer_globalmailaccount SET smtp_port = :p", p=run.sink.port)
            recover = await _next_delivery(run)
            result = await asyncio.wait_for(handle.result(), FINISH_SECONDS)
        finally:
            hanging.close()
        outcome = _row("SMTP server hangs", run, [campaign], 2, recover)
        outcome.notes.append(
            f"each hang a transient error after the {SMTP_TIMEOUT_SECONDS} s SMTP timeout; "
            f"campaign ended {result.status}, sent {result.sent}"
        )
        return outcome


async def _deferred_not_stuck(run: Scenario, campaign: str) -> None:
    """The batch gave up within the SMTP timeout (plus the lease): deferred on
    ``transient_error``, no claim left behind."""
    await until(
        lambda: run.state(campaign).defer_reason == "transient_error",
        timeout=SMTP_TIMEOUT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS + 30,
        what="the hung batch to end in a deferral",
    )
    claimed = run.sql(
        "SELECT count(*) FROM mailer_campaignrecipient WHERE claim_token IS NOT NULL "
        "AND campaign_id = :c",
        c=campaign,
    )
    assert claimed == [(0,)], f"claims left behind: {claimed}"


SCENARIOS = {
    "kill": worker_killed,
    "temporal": temporal_restarted,
    "postgres": postgres_down,
    "redis": redis_down,
    "storm": transient_storm,
    "two-workers": two_workers_one_window,
    "three-workers": three_workers_one_window,
    "hang": hanging_server,
}
