"""1,000 campaigns deferred at once on one worker: its memory, and how fast they all wake.

Every campaign's first batch meets a 451 from the SMTP sink, so all 1,000 defer on
``transient_error`` for the seed's retry delay (5 minutes, longer than it takes to start
them all, so each defers exactly once). Then the sink is healed and we measure the
seconds from the last deferral's end until every campaign has sent its batch, and the
worker process's RSS while they sleep and after. Temporal dev server, worker in its own
process, real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, Stopwatch

CAMPAIGNS = int(os.environ.get("BENCH_CAMPAIGNS", "1000"))


def cluster_log_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="mailer-bench-")


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def scalar(url: str, sql: str) -> object:
    from sqlalchemy import text

    from db.engine import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(text(sql)).scalar()


async def poll(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def main() -> None:
    from temporalio.testing import WorkflowEnvironment

    from mailer.stack.binaries import temporal_binary
    from mailer.stack.smtp_sink import FailureRule, SinkHandler, SmtpSink
    from tests import factories
    from tests.harness import new_task_queue
    from tests.servers import postgres_cluster, redis_server
    from workflows.campaign import CampaignWorkflow, workflow_id_for
    from workflows.contracts import CampaignInput
    from workflows.search_attributes import ALL_KEYS

    handler = SinkHandler(rules=[FailureRule("all", 451)], keep_in_memory=False)
    with (
        postgres_cluster(durable=True) as cluster,
        redis_server() as redis,
        SmtpSink(handler) as sink,
    ):
        url = cluster.new_database()
        user = factories.add_user(url)
        factories.set_account(url, smtp_port=sink.port)
        factories.set_quota(url, 10_000_000)
        campaigns = [factories.add_campaign(url, user, 2) for _ in range(CAMPAIGNS)]
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(), search_attributes=ALL_KEYS
        )
        queue = new_task_queue()
        worker_env = dict(os.environ)
        worker_env.update(
            {
                "MAILER_ENV_FILES": "",
                "MAILER_DATABASE_URL": url,
                "MAILER_REDIS_URL": redis.url,
                "MAILER_SMTP_BZ_API_URL": "http://127.0.0.1:9/v1",
                "MAILER_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "MAILER_TASK_QUEUE": queue,
                "MAILER_WORKING_HOURS_START": "0",
                "MAILER_WORKING_HOURS_END": "24",
                "MAILER_RATE_PER_HOUR": "10000000",
                "MAILER_TRANSIENT_RETRY_DELAY_MINUTES": "5",
                "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR": "1000000",
            }
        )
        log = Path(cluster_log_dir()) / "scale-worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=ROOT,
            env={**worker_env, "MAILER_LOG_LEVEL": "INFO"},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            await poll(lambda: "worker polling" in log.read_text(), 60, "the worker to start")
            idle_rss = rss_mib(worker.pid)
            with Stopwatch() as start_watch:
                for campaign in campaigns:
                    await env.client.start_workflow(
                        CampaignWorkflow.run,
                        CampaignInput(campaign),
                        id=workflow_id_for(campaign),
                        task_queue=queue,
                    )
                await poll(
                    lambda: (
                        scalar(
                            url,
                            "SELECT count(*) FROM mailer_campaignqueue "
                            "WHERE defer_reason = 'transient_error'",
                        )
                        == CAMPAIGNS
                    ),
                    600,
                    "every campaign to defer",
                )
            deferred_rss = rss_mib(worker.pid)
            handler.rules = []
            last_deferral_end = scalar(url, "SELECT max(deferred_until) FROM mailer_campaignqueue")
            await poll(
                lambda: (
                    scalar(
                        url,
                        "SELECT count(DISTINCT campaign_id) FROM mailer_sendlog "
                        "WHERE status = 'sent'",
                    )
                    == CAMPAIGNS
                ),
                900,
                "every campaign to send",
            )
            all_sent = scalar(
                url,
                "SELECT max(first) FROM (SELECT min(created_at) AS first FROM mailer_sendlog "
                "GROUP BY campaign_id) AS firsts",
            )
            after_rss = rss_mib(worker.pid)
        finally:
            worker.terminate()
            worker.wait(60)
            await env.shutdown()
    wake_seconds = (all_sent - last_deferral_end).total_seconds()  # type: ignore[operator]
    print(f"campaigns:                                {CAMPAIGNS}")
    print(f"seconds to start all and see them defer:  {start_watch.seconds:8.1f}")
    print(
        f"worker RSS idle / {CAMPAIGNS} deferred / after: "
        f"{idle_rss:6.0f} / {deferred_rss:6.0f} / {after_rss:6.0f} MiB"
    )
    print(
        "seconds from the last deferral's end until every campaign sent its batch: "
        f"{wake_seconds:6.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
