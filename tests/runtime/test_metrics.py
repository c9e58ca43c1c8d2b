"""The worker's Prometheus endpoint, scraped during a campaign: the SDK's own metrics and
mailer's, checked against the database."""

from __future__ import annotations

import asyncio
import re
import time
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
        # Before anything happened, every counter series exists at 0 (increase() sees the
        # first rise) and the worker says it is ready.
        before = samples((await http.get(url)).text)
        for name, labels in (
            ("mailer_emails_sent_total", {}),
            ("mailer_ratelimit_redis_errors_total", {}),
            ("mailer_emails_failed_total", {"error_class": "recipient"}),
            ("mailer_emails_failed_total", {"error_class": "suppressed"}),
            ("mailer_emails_deferred_total", {"kind": "domain"}),
            ("mailer_emails_outcome_unknown_total", {}),
            ("mailer_deferrals_total", {"reason": "rate_per_hour"}),
            ("mailer_breaker_trips_total", {}),
        ):
            assert any(n == name and set(labels.items()) <= set(ls) for (n, ls) in before), name
            assert total(before, name, **labels) == 0, name
        assert total(before, "mailer_worker_ready") == 1
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
        assert total(found, "temporal_activity_execution_latency_seconds_count") > 0
        assert total(found, "temporal_worker_task_slots_available", task_queue=dev.task_queue) > 0

        # Gauges are read from the tables every 15 s.
        async def gauges_current() -> bool:
            now = await scraped()
            return (
                total(now, "mailer_queue_depth") == 1
                and total(now, "mailer_quota_available") == 1_000_000 - 30
            )

        await wait_for(gauges_current, timeout=40, interval=1, what="gauges = the database")
        final = await scraped()
        assert total(final, "mailer_processing_oldest_timestamp_seconds") == 0  # none
        assert total(final, "mailer_lock_wait_oldest_timestamp_seconds") == 0  # none
        assert total(final, "mailer_campaigns_max_consecutive_transient_errors") == 0
        assert total(final, "mailer_database_up") == 1
        [(last_synced,)] = dev.sql(
            "SELECT coalesce(floor(extract(epoch FROM last_synced_at)), 0)::bigint "
            "FROM mailer_smtpbzquota"
        )
        assert total(final, "mailer_quota_last_sync_timestamp_seconds") == last_synced
        collected = total(final, "mailer_gauges_collected_timestamp_seconds", source="database")
        assert abs(collected - time.time()) < 60
        # No series per campaign: per-campaign data stays in the tables and `mailer status`.
        assert not any("campaign_id" in dict(labels) for (_, labels) in final)
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


async def test_a_worker_waiting_for_temporal_answers_scrapes_as_not_ready(
    dev: Harness, tmp_path: Path
) -> None:
    """Up to Prometheus (its endpoint answers) but not polling: mailer_worker_ready 0."""
    port = free_port()
    env = process_env(
        dev,
        MAILER_METRICS_PORT=str(port),
        MAILER_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",  # nobody there
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async with httpx.AsyncClient() as http:

            async def scraped_not_ready() -> bool:
                try:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.HTTPError:
                    return False
                return ("mailer_worker_ready", frozenset()) in samples(text) and total(
                    samples(text), "mailer_worker_ready"
                ) == 0

            await wait_for(scraped_not_ready, timeout=30, interval=0.5, what="not ready")
    finally:
        worker.stop()
