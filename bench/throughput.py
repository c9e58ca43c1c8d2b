"""End-to-end emails/s with limits lifted vs a plain aiosmtplib baseline, like for like.

Both sides send the same number of messages to the same sink process (in its own
process) over the same number of SMTP connections at once: the engine runs CAMPAIGNS
campaigns (one batch, one connection each, at a time); the baseline runs as many
connections in parallel, each sending ready-made messages (nothing rendered, built or
recorded: the transport alone). The sides alternate, RUNS times each, and the medians and
their ratio are printed (these machines are noisy: compare within one run of this script).
``--latency-ms N`` delays each SMTP reply N ms, like a provider across the internet: there
the engine's concurrency, not its per-message CPU, decides throughput. Also prints history
events per 1,000 emails. ``--event-loop asyncio|uvloop`` is the loop both sides run on
(default: the worker's, uvloop). Budgets (README, docs/architecture.md): ratio >= 0.7, <= 150
events per 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Stopwatch, latency_proxy, sink_process
from bench.temporal_target import clean_up, temporal_target


@dataclass(frozen=True)
class Run:
    """One side's run: emails/s, and this process's CPU milliseconds per email (for the
    engine: the worker's, which runs in this process)."""

    rate: float
    cpu_ms: float
    events_per_1000: float = 0.0
    commits_per_email: float = 0.0


@dataclass(frozen=True)
class Shape:
    campaigns: int
    recipients: int

    @property
    def total(self) -> int:
        return self.campaigns * self.recipients


def ready_messages(count: int, offset: int) -> list[tuple[str, bytes]]:
    messages = []
    for i in range(offset, offset + count):
        message = EmailMessage()
        message["From"] = "news@example.com"
        message["To"] = f"plain{i}@example.com"
        message["Subject"] = f"Hello {i}"
        message.set_content(f"Hi {i}, this is plain{i}@example.com.\n")
        message.add_alternative(f"<p>Hi {i}</p>", subtype="html")
        messages.append((f"plain{i}@example.com", message.as_bytes()))
    return messages


async def plain_baseline(port: int, shape: Shape) -> Run:
    """``shape.campaigns`` connections in parallel, ``shape.recipients`` ready-made
    messages each, one after another on each connection."""
    import aiosmtplib

    batches = [
        ready_messages(shape.recipients, c * shape.recipients) for c in range(shape.campaigns)
    ]

    async def one_connection(messages: list[tuple[str, bytes]]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for recipient, data in messages:
            await smtp.sendmail("news@example.com", [recipient], data)
        await smtp.quit()

    with Stopwatch() as watch:
        await asyncio.gather(*(one_connection(batch) for batch in batches))
    return Run(shape.total / watch.seconds, 1000 * watch.cpu_seconds / shape.total)


class Engine:
    """Temporal (the operator's cluster, or the dev server: bench/temporal_target.py),
    PostgreSQL and Redis, started once; a fresh database and task queue per run."""

    async def __aenter__(self) -> Engine:
        from contextlib import AsyncExitStack

        from mailer.stack.servers import postgres_cluster, redis_server

        self._stack = AsyncExitStack()
        self.cluster = self._stack.enter_context(postgres_cluster(durable=True))
        self.redis = self._stack.enter_context(redis_server())
        self.target = await self._stack.enter_async_context(temporal_target())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def run(self, port: int, shape: Shape) -> Run:
        """Emails/s end to end, CPU per email, history events per 1,000 emails, and
        PostgreSQL commits per email (one per message, plus each batch's planning)."""
        from mailer.core.settings import load_settings
        from mailer.runtime.worker import build_worker
        from mailer.stack import seed_data
        from workflows.campaign import CampaignWorkflow, workflow_id_for
        from workflows.contracts import CampaignInput

        url = self.cluster.new_database()
        user = seed_data.add_user(url)
        seed_data.set_account(url, smtp_port=port)
        seed_data.set_quota(url, 10_000_000)
        campaigns = [
            seed_data.add_campaign(url, user, shape.recipients) for _ in range(shape.campaigns)
        ]
        settings = load_settings(
            database_url=url,
            redis_url=self.redis.url,
            smtp_bz_api_url="http://127.0.0.1:9/v1",
            rate_per_hour=10_000_000,
            throttle_campaign_start_per_hour=1_000,  # runs share Redis and user ids
            working_hours_start=0,
            working_hours_end=24,
        )
        client = self.target.client
        queue = f"bench-{uuid.uuid4().hex[:10]}"
        async with build_worker(client, settings, task_queue=queue):
            with Stopwatch() as watch:
                handles = [
                    await client.start_workflow(
                        CampaignWorkflow.run,
                        CampaignInput(c),
                        id=workflow_id_for(c),
                        task_queue=queue,
                    )
                    for c in campaigns
                ]
                results = await asyncio.gather(*(h.result() for h in handles))
        await clean_up(self.target, queue)
        assert all(r.sent == shape.recipients for r in results), results
        events = 0
        for c in campaigns:
            async for run in client.list_workflows(f'WorkflowId="{workflow_id_for(c)}"'):
                history = await client.get_workflow_handle(
                    run.id, run_id=run.run_id
                ).fetch_history()
                events += len(history.events)
        commits = await self.commits(url)
        return Run(
            rate=shape.total / watch.seconds,
            cpu_ms=1000 * watch.cpu_seconds / shape.total,
            events_per_1000=events / (shape.total / 1000),
            commits_per_email=commits / shape.total,
        )

    async def commits(self, url: str) -> int:
        """Transactions committed in the run's database, once its connections have closed
        (a backend's statistics are flushed when it exits)."""
        import psycopg

        from db.engine import get_engine

        get_engine(url).dispose()
        name = url.rsplit("/", 1)[1]
        last, stable = -1, 0
        while stable < 3:
            with psycopg.connect(
                f"host=127.0.0.1 port={self.cluster.port} user=postgres dbname=postgres"
            ) as conn:
                row = conn.execute(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
                ).fetchone()
            value = int(row[0]) if row else 0
            stable = stable + 1 if value == last else 0
            last = value
            await asyncio.sleep(0.2)
        return last


def arguments() -> argparse.Namespace:
    from typing import get_args

    from mailer.core.event_loop import EventLoopKind

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=5, help="= connections on both sides")
    parser.add_argument("--recipients", type=int, default=1000, help="per campaign")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the sink delays each reply")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=None,
        help="a proxy delays every chunk RTT/2 each way (the network; bench/latency_proxy.py)",
    )
    parser.add_argument(
        "--pipelining",
        action="store_true",
        help="the sink advertises PIPELINING (mailer then pipelines; the plain loop cannot)",
    )
    parser.add_argument(
        "--event-loop",
        choices=get_args(EventLoopKind),
        default="uvloop",
        help="the loop both sides run on (the worker's MAILER_EVENT_LOOP; default uvloop)",
    )
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    shape = Shape(args.campaigns, args.recipients)
    engine_runs: list[Run] = []
    plain_runs: list[Run] = []
    with (
        sink_process(latency_ms=args.latency_ms, pipelining=args.pipelining) as sink_port,
        ExitStack() as network,
    ):
        port = sink_port
        if args.rtt_ms is not None:
            port = network.enter_context(latency_proxy(sink_port, args.rtt_ms))
        async with Engine() as engine:
            print(f"Temporal: {engine.target.label}", flush=True)
            for number in range(1, args.runs + 1):
                engine_runs.append(await engine.run(port, shape))
                plain_runs.append(await plain_baseline(port, shape))
                print(
                    f"run {number}: mailer {engine_runs[-1].rate:7.1f}/s, "
                    f"plain {plain_runs[-1].rate:7.1f}/s",
                    flush=True,
                )

    def median(runs: list[Run], field: str) -> float:
        return float(statistics.median(float(getattr(run, field)) for run in runs))

    engine_median, plain_median = median(engine_runs, "rate"), median(plain_runs, "rate")
    connections = f"{shape.campaigns} connections each, {shape.total} emails"
    rtt = f"; network RTT {args.rtt_ms:.0f} ms (proxy)" if args.rtt_ms is not None else ""
    pipelined = "; the sink advertises PIPELINING" if args.pipelining else ""
    print(f"sink latency per reply: {args.latency_ms:.0f} ms{rtt}; {connections}{pipelined}")
    print(f"event loop (both sides):       {args.event_loop}")
    print(f"plain aiosmtplib, median:      {plain_median:8.1f} emails/s")
    print(f"mailer end to end, median:     {engine_median:8.1f} emails/s")
    print(f"ratio of medians (>= 0.70):    {engine_median / plain_median:8.2f}")
    print(
        f"CPU ms per email, this process: mailer {median(engine_runs, 'cpu_ms'):.2f}, "
        f"plain {median(plain_runs, 'cpu_ms'):.2f}"
    )
    print(
        f"history events / 1,000 emails: {median(engine_runs, 'events_per_1000'):8.1f} "
        "(budget <= 150)"
    )
    print(f"PostgreSQL commits per email:  {median(engine_runs, 'commits_per_email'):8.2f}")


if __name__ == "__main__":
    from mailer.core.event_loop import run

    args = arguments()
    run(main(args), args.event_loop)
