"""1,000 campaigns deferred at once on N workers: how fast they all wake, and each worker's memory.

Every campaign's first batch meets 451s from the SMTP sink, so all of them defer on
``transient_error`` for the retry delay (longer than it takes to start them all, so each
defers exactly once: a run where the first deferral ends sooner is refused). Then the sink
is healed and we measure the seconds from the last deferral's end until every campaign has
sent its batch, and each worker process's RSS idle, while they sleep, and after.
``--workers 1 2`` measures one worker, then two on one task queue (a fresh database and
Temporal dev server each), and prints both. Workers in their own processes, real PostgreSQL
and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, Stopwatch, cpu_seconds
from bench.temporal_target import clean_up, temporal_target


@dataclass(frozen=True)
class ScaleResult:
    workers: int
    campaigns: int
    start_seconds: float  # to start every campaign and see each defer
    wake_seconds: float  # from the last deferral's end until every campaign sent
    rss_idle: list[float]  # MiB, per worker
    rss_deferred: list[float]
    rss_after: list[float]
    started_shape: str = ""  # one campaign's history once started and deferred
    woken_shape: str = ""  # what its wake, batch and finish added
    # Each campaign's own lag: its first "sent" after its own deferral's end, in seconds.
    lags: list[float] = field(default_factory=list)
    wake_rate: float = 0.0  # campaigns sent per second, first deferral end to last sent
    # CPU seconds each part of the stack spent while every campaign started and deferred.
    start_cpu: dict[str, float] = field(default_factory=dict)
    # And from then until every campaign sent (the sleep costs next to nothing).
    wake_cpu: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def lags_of(deferral_ends: dict[str, Any], first_sent: dict[str, Any]) -> list[float]:
    return [
        (first_sent[campaign] - end).total_seconds()
        for campaign, end in deferral_ends.items()
        if campaign in first_sent
    ]


def history_shape(events: list[Any]) -> str:
    """Events, and what Temporal counts as actions among them (runs started, activities
    scheduled, local-activity markers, timers, search-attribute upserts)."""
    kinds = {
        "activity_task_scheduled_event_attributes": "activities",
        "marker_recorded_event_attributes": "markers",
        "timer_started_event_attributes": "timers",
        "upsert_workflow_search_attributes_event_attributes": "upserts",
    }
    counts = dict.fromkeys(kinds.values(), 0)
    activities = []
    for event in events:
        for attributes, name in kinds.items():
            if event.HasField(attributes):
                counts[name] += 1
        if event.HasField("activity_task_scheduled_event_attributes"):
            activities.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    described = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"{len(events)} events ({described}; activities: {', '.join(activities) or '-'})"


def rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / 2**20)


def scalar(url: str, sql: str) -> object:
    from sqlalchemy import text

    from db.engine import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(text(sql)).scalar()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    from db.engine import get_engine

    with get_engine(url).connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql)).all()]


async def poll(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what} {explain()}".rstrip())
        await asyncio.sleep(0.5)


@dataclass
class DeferralClock:
    """The earliest deferral's end seen while campaigns are still starting."""

    first_end: datetime | None = None


def all_deferred(url: str, campaigns: int, clock: DeferralClock) -> bool:
    """Whether every campaign has deferred. Refuses the run (exits) once the first deferral
    has ended before the last campaign deferred: its early campaigns woke and deferred again
    while others started, so the fleet was never deferred at once and the wake measures
    nothing. The remedy is a longer ``--retry-delay-minutes``."""
    ((deferred, first_end, now),) = rows(
        url,
        "SELECT count(*), min(deferred_until), now() FROM mailer_campaignqueue "
        "WHERE defer_reason = 'transient_error'",
    )
    if first_end is not None and (clock.first_end is None or first_end < clock.first_end):
        clock.first_end = first_end
    if deferred == campaigns:
        return True
    if clock.first_end is not None and now >= clock.first_end:
        raise SystemExit(
            f"the first deferral ended at {clock.first_end:%H:%M:%S} with {deferred} of "
            f"{campaigns} campaigns deferred: the retry delay is shorter than starting them "
            "all takes; rerun with a longer --retry-delay-minutes"
        )
    return False


def worker_env(url: str, redis_url: str, temporal: str, queue: str, delay: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MAILER_ENV_FILES": "",
            "MAILER_DATABASE_URL": url,
            "MAILER_REDIS_URL": redis_url,
            "MAILER_SMTP_BZ_API_URL": "http://127.0.0.1:9/v1",
            "MAILER_TEMPORAL_ADDRESS": temporal,
            "MAILER_TASK_QUEUE": queue,
            "MAILER_WORKING_HOURS_START": "0",
            "MAILER_WORKING_HOURS_END": "24",
            "MAILER_RATE_PER_HOUR": "10000000",
            "MAILER_TRANSIENT_RETRY_DELAY_MINUTES": str(delay),
            # Three 451s in a row are a server-wide throttle: the campaign waits the first
            # step of the recipients' 4xx schedule, so that is the deferral too.
            "MAILER_RECIPIENT_RETRY_MINUTES": str(delay),
            "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR": "1000000",
            "MAILER_LOG_LEVEL": "INFO",
        }
    )
    return env


async def measure(
    workers: int, campaigns: int, delay_minutes: int, concurrency: int = 1
) -> ScaleResult:
    from mailer.stack import seed_data
    from mailer.stack.servers import postgres_cluster, redis_server
    from mailer.stack.smtp_sink import FailureRule, SinkHandler, SmtpSink
    from workflows.campaign import CampaignWorkflow, workflow_id_for
    from workflows.contracts import CampaignInput

    handler = SinkHandler(rules=[FailureRule("all", 451)], keep_in_memory=False)
    logs = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    async with AsyncExitStack() as stack:
        cluster = stack.enter_context(postgres_cluster(durable=True))
        redis = stack.enter_context(redis_server())
        sink = stack.enter_context(SmtpSink(handler))
        url = cluster.new_database()
        user = seed_data.add_user(url)
        seed_data.set_account(url, smtp_port=sink.port)
        seed_data.set_quota(url, 10_000_000)
        # Three recipients: three 451s in a row are a server-wide throttle, one deferral.
        ids = [seed_data.add_campaign(url, user, 3) for _ in range(campaigns)]
        target = await stack.enter_async_context(temporal_target())
        print(f"Temporal: {target.label}", flush=True)
        queue = f"bench-{uuid.uuid4().hex[:10]}"
        settings = worker_env(url, redis.url, target.address, queue, delay_minutes)
        processes = []
        for n in range(workers):
            log = logs / f"worker-{n + 1}.log"
            processes.append(
                (
                    subprocess.Popen(
                        [sys.executable, "-m", "worker"],
                        cwd=ROOT,
                        env=settings,
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
        pids = [p.pid for p, _ in processes]
        try:
            for _, log in processes:
                await poll(partial(_polling, log), 60, "a worker")
            idle = [rss_mib(pid) for pid in pids]
            starts = asyncio.Semaphore(concurrency)

            async def start(campaign: str) -> None:
                async with starts:
                    await target.client.start_workflow(
                        CampaignWorkflow.run,
                        CampaignInput(campaign),
                        id=workflow_id_for(campaign),
                        task_queue=queue,
                    )

            cpu_before = cpu_seconds(pids)
            with Stopwatch() as start_watch:
                await asyncio.gather(*(start(campaign) for campaign in ids))
                await poll(
                    partial(all_deferred, url, campaigns, DeferralClock()),
                    max(600, campaigns / 5),  # a stalled fleet fails; a large one has time
                    "every campaign to defer",
                    explain=lambda: str(
                        scalar(
                            url,
                            "SELECT string_agg(s, ', ') FROM (SELECT concat(q.status, '/', "
                            "coalesce(q.defer_reason, '-'), '/', c.status, ': ', count(*)) AS s "
                            "FROM mailer_campaignqueue q JOIN mailer_campaign c "
                            "ON c.id = q.campaign_id GROUP BY 1=1, q.status, q.defer_reason, "
                            "c.status) AS states",
                        )
                    ),
                )
            deferred = [rss_mib(pid) for pid in pids]
            cpu_after = cpu_seconds(pids)
            sample = target.client.get_workflow_handle(workflow_id_for(ids[0]))
            at_deferral = list((await sample.fetch_history()).events)
            handler.rules = []
            deferral_ends = dict(
                rows(url, "SELECT campaign_id::text, deferred_until FROM mailer_campaignqueue")
            )
            last_deferral_end = max(deferral_ends.values())
            await poll(
                lambda: (
                    scalar(
                        url,
                        "SELECT count(DISTINCT campaign_id) FROM mailer_sendlog "
                        "WHERE status = 'sent'",
                    )
                    == campaigns
                ),
                60 * delay_minutes + 900,
                "every campaign to send",
            )
            first_sent = dict(
                rows(
                    url,
                    "SELECT campaign_id::text, min(created_at) FROM mailer_sendlog "
                    "WHERE status = 'sent' GROUP BY campaign_id",
                )
            )
            all_sent = max(first_sent.values())
            cpu_sent = cpu_seconds(pids)
            after = [rss_mib(pid) for pid in pids]
            await sample.result()
            at_end = list((await sample.fetch_history()).events)
        finally:
            for process, _ in processes:
                process.terminate()
            for process, _ in processes:
                process.wait(60)
            await clean_up(target, queue)
    wake = (all_sent - last_deferral_end).total_seconds()
    return ScaleResult(
        workers,
        campaigns,
        start_watch.seconds,
        wake,
        idle,
        deferred,
        after,
        started_shape=history_shape(at_deferral),
        woken_shape=history_shape(at_end[len(at_deferral) :]),
        lags=lags_of(deferral_ends, first_sent),
        wake_rate=campaigns / (all_sent - min(deferral_ends.values())).total_seconds(),
        start_cpu={part: cpu_after.get(part, 0.0) - cpu for part, cpu in cpu_before.items()},
        wake_cpu={part: cpu_sent.get(part, 0.0) - cpu for part, cpu in cpu_after.items()},
    )


def _polling(log: Path) -> bool:
    return "worker polling" in log.read_text()


def per_campaign(cpu: dict[str, float], result: ScaleResult) -> str:
    ordered = sorted(cpu.items(), key=lambda item: -item[1])
    return ", ".join(f"{part} {1000 * seconds / result.campaigns:.1f}" for part, seconds in ordered)


def mib(values: list[float]) -> str:
    return " + ".join(f"{v:.0f}" for v in values) + " MiB"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument(
        "--retry-delay-minutes",
        type=int,
        default=5,
        help="the deferral; must outlast starting every campaign",
    )
    parser.add_argument(
        "--start-concurrency",
        type=int,
        default=1,
        help="start requests in flight at once (1: one after another, as the dispatcher does)",
    )
    args = parser.parse_args()
    results = []
    for workers in args.workers:
        result = await measure(
            workers, args.campaigns, args.retry_delay_minutes, args.start_concurrency
        )
        results.append(result)
        print(
            f"{workers} worker(s): started and deferred {result.campaigns} in "
            f"{result.start_seconds:.1f} s; all woke and sent {result.wake_seconds:.1f} s after "
            f"the last deferral ended; RSS idle {mib(result.rss_idle)}, deferred "
            f"{mib(result.rss_deferred)}, after {mib(result.rss_after)}",
            flush=True,
        )
        started, woken = (
            per_campaign(result.start_cpu, result),
            per_campaign(result.wake_cpu, result),
        )
        print(f"  CPU ms per campaign started and deferred: {started}", flush=True)
        print(f"  CPU ms per campaign from then until all sent: {woken}", flush=True)
        print(f"  one campaign, start and defer: {result.started_shape}", flush=True)
        print(f"  then wake, send and finish: {result.woken_shape}", flush=True)
        print(
            f"  each campaign's first send after its own deferral ended: median "
            f"{percentile(result.lags, 0.5):.1f} s, p95 {percentile(result.lags, 0.95):.1f} s, "
            f"max {max(result.lags, default=0):.1f} s; woken and sent at "
            f"{result.wake_rate:.1f} campaigns/s (started at "
            f"{result.campaigns / result.start_seconds:.1f}/s)",
            flush=True,
        )
    print()
    print("| workers | start + defer all | wake and send all | RSS per worker (deferred) |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r.workers} | {r.start_seconds:.1f} s | {r.wake_seconds:.1f} s "
            f"| {mib(r.rss_deferred)} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
