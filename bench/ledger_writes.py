"""What a campaign's start and a state record cost in the ledger: CPU milliseconds per call
in this process (the worker's side: SQLAlchemy and the driver) and in PostgreSQL, on a
throwaway database.

A start is the start activity's database part (the checks, the marks, the snapshot the
workflow decides on); a record is a deferral's mirror into the tables and its snapshot: each
campaign has one of each when it starts and defers (``bench/scale.py``). Both are called as
the worker calls them (``MailerActivities``), one campaign after another on one connection
from the pool. To compare two commits, run this file on each, alternately (PYTHONPATH on a
worktree), and compare the medians.

    .venv/bin/python bench/ledger_writes.py [--campaigns 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import cpu_seconds  # (the repository on the path, no .env files)


def postgres_cpu() -> float:
    """CPU seconds so far of PostgreSQL on this machine, as bench/scale.py counts it."""
    return cpu_seconds([]).get("PostgreSQL", 0.0)


def main() -> None:
    from activities.mailer_activities import MailerActivities
    from mailer.core.settings import load_settings
    from mailer.stack import seed_data
    from mailer.stack.throwaway import postgres_cluster
    from workflows.contracts import RecordStateInput, StartCampaignInput
    from workflows.states import CampaignStatus, QueueStatus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=300, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with postgres_cluster() as cluster:
        url = cluster.new_database()
        user = seed_data.add_user(url)
        seed_data.set_account(url, smtp_port=25)
        seed_data.set_quota(url, 10**6)
        activities = MailerActivities(load_settings(database_url=url))
        now = datetime.now(UTC)
        until = now + timedelta(hours=1)
        results: dict[str, list[tuple[float, float]]] = {"start": [], "record": []}
        for round_number in range(args.rounds + 1):  # the first round warms up
            ids = [seed_data.add_campaign(url, user, 1) for _ in range(args.campaigns)]

            def start(campaign: str) -> None:
                activities.start_campaign(StartCampaignInput(campaign, now, counted=True))

            def record(campaign: str) -> None:
                activities.record_state(
                    RecordStateInput(
                        campaign,
                        now,
                        CampaignStatus.SENDING,
                        QueueStatus.PENDING,
                        defer_reason="rate_per_hour",
                        deferred_until=until,
                        expected_statuses=[CampaignStatus.SENDING],
                    )
                )

            for name, call in (("start", start), ("record", record)):
                client, server = time.process_time(), postgres_cpu()
                for campaign in ids:
                    call(campaign)
                client, server = time.process_time() - client, postgres_cpu() - server
                if round_number:
                    per_call = 1000 / args.campaigns
                    results[name].append((client * per_call, server * per_call))
        for name, measured in results.items():
            client_ms = statistics.median(m[0] for m in measured)
            server_ms = statistics.median(m[1] for m in measured)
            print(
                f"{name}: CPU ms per call, median of {args.rounds} rounds of "
                f"{args.campaigns}: this process {client_ms:.2f}, PostgreSQL {server_ms:.2f}, "
                f"both {client_ms + server_ms:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
