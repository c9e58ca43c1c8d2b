"""End-to-end emails/s with limits lifted vs a plain aiosmtplib loop, in the same run.

5 campaigns x 1,000 recipients through the real workflow, activities, PostgreSQL and Redis,
to an SMTP sink in its own process, on a Temporal dev server. Also prints history events
per 1,000 emails. Budgets (DESIGN.md §8): ratio >= 0.7, <= 150 events per 1,000 emails.
"""

from __future__ import annotations

import asyncio
import sys
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Stopwatch, sink_process

CAMPAIGNS = 5
RECIPIENTS = 1_000


async def plain_loop(port: int, count: int) -> float:
    """The baseline: one aiosmtplib connection sending ready-made messages, one after
    another: the transport alone, with nothing rendered, built or recorded."""
    import aiosmtplib

    messages = []
    for i in range(count):
        message = EmailMessage()
        message["From"] = "news@example.com"
        message["To"] = f"plain{i}@example.com"
        message["Subject"] = f"Hello {i}"
        message.set_content(f"Hi {i}, this is plain{i}@example.com.\n")
        message.add_alternative(f"<p>Hi {i}</p>", subtype="html")
        messages.append((f"plain{i}@example.com", message.as_bytes()))
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    with Stopwatch() as watch:
        for recipient, data in messages:
            await smtp.sendmail("news@example.com", [recipient], data)
    await smtp.quit()
    return count / watch.seconds


async def engine_run(port: int) -> tuple[float, float]:
    from temporalio.testing import WorkflowEnvironment

    from mailer.stack.binaries import temporal_binary
    from tests import factories
    from tests.harness import make_settings, new_task_queue
    from tests.servers import postgres_cluster, redis_server
    from worker import build_worker
    from workflows.campaign import CampaignWorkflow, workflow_id_for
    from workflows.contracts import CampaignInput
    from workflows.search_attributes import ALL_KEYS

    with postgres_cluster(durable=True) as cluster, redis_server() as redis:
        url = cluster.new_database()
        user = factories.add_user(url)
        factories.set_account(url, smtp_port=port)
        factories.set_quota(url, 10_000_000)
        campaigns = [factories.add_campaign(url, user, RECIPIENTS) for _ in range(CAMPAIGNS)]
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(), search_attributes=ALL_KEYS
        )
        try:
            settings = make_settings(
                url,
                redis.url,
                "http://127.0.0.1:9/v1",
                rate_per_hour=10_000_000,
                working_hours_start=0,
                working_hours_end=24,
            )
            queue = new_task_queue()
            async with build_worker(env.client, settings, task_queue=queue):
                with Stopwatch() as watch:
                    handles = [
                        await env.client.start_workflow(
                            CampaignWorkflow.run,
                            CampaignInput(c),
                            id=workflow_id_for(c),
                            task_queue=queue,
                        )
                        for c in campaigns
                    ]
                    results = await asyncio.gather(*(h.result() for h in handles))
            assert all(r.sent == RECIPIENTS for r in results), results
            events = 0
            for c in campaigns:
                async for run in env.client.list_workflows(f'WorkflowId="{workflow_id_for(c)}"'):
                    history = await env.client.get_workflow_handle(
                        run.id, run_id=run.run_id
                    ).fetch_history()
                    events += len(history.events)
        finally:
            await env.shutdown()
    total = CAMPAIGNS * RECIPIENTS
    return total / watch.seconds, events / (total / 1000)


async def main() -> None:
    with sink_process() as port:
        engine_rate, events_per_1000 = await engine_run(port)
        plain_rate = await plain_loop(port, CAMPAIGNS * RECIPIENTS)
    print(f"plain aiosmtplib loop:         {plain_rate:8.1f} emails/s")
    print(f"mailer end to end ({CAMPAIGNS}x{RECIPIENTS}):  {engine_rate:8.1f} emails/s")
    print(f"ratio (budget >= 0.70):        {engine_rate / plain_rate:8.2f}")
    print(f"history events / 1,000 emails: {events_per_1000:8.1f} (budget <= 150)")


if __name__ == "__main__":
    asyncio.run(main())
