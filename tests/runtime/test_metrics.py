"""The worker's Prometheus endpoint, scraped during a campaign: the SDK's own metrics and
mailer's, checked against the database."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bench.faults.rig import WorkerProcess
from mailer.stack import seed_data
from mailer.stack.servers import free_port
from mailer.stack.smtp_sink import FailureRule
from tests.support.harness import Harness, healthcheck, process_env, wait_for

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format as {(name, labels): value} (labels without service_name)."""
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(
            (key, value)
            for key, value in re.findall(r'(\w+)="([^"]*)"', match["labels"] or "")
            if key != "service_name"
        )
        found[(match["name"], labels)] = float(match["value"])
    return found


def total(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= set(ls))


@asynccontextmanager
async def metrics_worker(
    harness: Harness, tmp_path: Path, port: int, **overrides: str
) -> AsyncIterator[str]:
    env = process_env(
        harness,
        MAILER_METRICS_PORT=str(port),
        MAILER_WORKING_HOURS_START="0",
        MAILER_WORKING_HOURS_END="24",
        MAILER_RATE_PER_HOUR="30",
        MAILER_SEND_BATCH_SIZE="10",
        **overrides,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await wait_for(worker.polling, timeout=60, what="the worker polling")
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        worker.stop()


async def test_scraped_metrics_match_the_database(dev: Harness, tmp_path: Path) -> None:
    user = dev.add_sender()
    emails = [f"r{i:02d}@example.com" for i in range(40)]
    dev.sink.handler.rules = [FailureRule("r0[357]@example.com", 550)]
    campaign = seed_data.add_campaign(dev.database_url, user, emails)
    port = free_port()
    async with metrics_worker(dev, tmp_path, port) as url, httpx.AsyncClient() as http:
        healthy = await healthcheck(process_env(dev, MAILER_METRICS_PORT=str(port)))
        assert healthy.returncode == 0 and healthy.stdout.startswith("healthy: polling task queue")
        await dev.start(campaign)
        # The hourly window is 30: 30 tokens used (27 sent, 3 refused), then a deferral.
        await wait_for(
            lambda: dev.queue_row(campaign).get("defer_reason") == "rate_per_hour", timeout=60
        )
        sent = dev.sql(
            "SELECT count(*) FROM mailer_sendlog WHERE provider = 'smtp_global' AND status = 'sent'"
        )[0][0]
        failed = dev.sql("SELECT count(*) FROM mailer_campaignrecipient WHERE status = 'failed'")[
            0
        ][0]
        assert (sent, failed) == (27, 3)

        async def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return samples((await http.get(url)).text)

        # The workflow counts the deferral just after writing it to the queue row.
        async def deferral_counted() -> bool:
            return total(await scraped(), "mailer_deferrals_total", reason="rate_per_hour") == 1

        await wait_for(deferral_counted, timeout=10, interval=1, what="the deferral counted")
        found = await scraped()
        assert total(found, "mailer_emails_sent_total") == sent
        assert total(found, "mailer_emails_failed_total", error_class="recipient") == failed
        assert total(found, "mailer_deferrals_total", reason="rate_per_hour") == 1
        assert total(found, "mailer_breaker_trips_total") == 0
        # The SDK's own metrics, from the same endpoint.
        assert total(found, "temporal_activity_execution_latency_count") > 0
        assert total(found, "temporal_worker_task_slots_available", task_queue=dev.task_queue) > 0

        # Gauges are read from the tables every 15 s.
        async def gauges_current() -> bool:
            now = await scraped()
            return (
                total(now, "mailer_queue_depth") == 1
                and total(now, "mailer_quota_available") == 1_000_000 - 30
                and (
                    "mailer_campaign_consecutive_transient_errors",
                    frozenset({("campaign_id", campaign)}),
                )
                in now
            )

        await wait_for(gauges_current, timeout=40, interval=1, what="gauges = the database")
        final = await scraped()
        assert total(final, "mailer_processing_oldest_seconds") == 0
        assert total(final, "mailer_database_up") == 1
    stopped = await healthcheck(process_env(dev, MAILER_METRICS_PORT=str(port)))
    assert stopped.returncode == 1 and stopped.stdout.startswith("unhealthy: cannot read")


async def test_redis_errors_are_counted_while_the_limiter_fails_open(
    dev: Harness, tmp_path: Path
) -> None:
    campaign = dev.ready_campaign(5)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        metrics_worker(dev, tmp_path, free_port(), MAILER_REDIS_URL=closed) as url,
        httpx.AsyncClient() as http,
    ):
        handle = await dev.start(campaign)
        await asyncio.wait_for(handle.result(), timeout=60)
        found = samples((await http.get(url)).text)
    assert total(found, "mailer_emails_sent_total") == 5  # failing open: sent all the same
    assert total(found, "mailer_ratelimit_redis_errors_total") >= 1
