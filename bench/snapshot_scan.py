"""What the gates' snapshot costs as the day's sends grow: the wall time of one
``take_snapshot`` (PostgreSQL's work included) with and without a per-user daily limit,
measured alternately in one run on a throwaway database.

Each turn of a campaign's loop takes a snapshot, and each batch one more. Today's sends by
the creator count only against a daily limit, so without one the snapshot does not read
them (``activities/ledger.py``); with one it scans the day's send log. The measured
campaign has RECIPIENTS recipients; ``--sends-today`` messages went today from other
campaigns of the same creator.

    .venv/bin/python bench/snapshot_scan.py [--sends-today 30000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ms_per_call  # (the repository on the path, no .env files)

RECIPIENTS = 10_000
ROUNDS, CALLS = 5, 40


def main() -> None:
    from sqlalchemy import text

    from activities.ledger import take_snapshot
    from db.engine import get_engine, session_scope
    from mailer.core.settings import load_settings
    from mailer.stack import seed_data
    from mailer.stack.throwaway import postgres_cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends-today", type=int, default=30_000)
    args = parser.parse_args()
    campaigns = max(1, -(-args.sends_today // RECIPIENTS))  # enough recipients to send
    with postgres_cluster() as cluster:
        url = cluster.new_database()
        user = seed_data.add_user(url)
        seed_data.set_account(url, smtp_port=25)
        seed_data.set_quota(url, 10**6)
        ids = [seed_data.add_campaign(url, user, RECIPIENTS) for _ in range(campaigns + 1)]
        engine = get_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE mailer_campaign SET status = 'sending'"))
            conn.execute(
                text(
                    """
                    WITH sent AS (
                        UPDATE mailer_campaignrecipient SET status = 'sent', sent_at = now()
                         WHERE id IN (SELECT id FROM mailer_campaignrecipient
                                       WHERE campaign_id <> :measured ORDER BY id LIMIT :n)
                     RETURNING id, campaign_id, email
                    )
                    INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider,
                                                status, message_id, smtp_code, error, created_at)
                    SELECT campaign_id, id, email, 'smtp_global', 'sent', '<bench>', 250, '',
                           now()
                      FROM sent
                    """
                ),
                {"measured": ids[0], "n": args.sends_today},
            )
            conn.execute(text("ANALYZE"))
        settings = load_settings(database_url=url)
        campaign, now = uuid.UUID(ids[0]), datetime.now(UTC)

        def snapshot() -> object:
            with session_scope(url) as session:
                return take_snapshot(session, campaign, now, settings)

        def wall_ms_per_call(call: Callable[[], object]) -> list[float]:
            return ms_per_call(call, clock=time.perf_counter, rounds=ROUNDS, calls=CALLS)

        def with_limit(limit: int) -> None:
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE mailer_globalmailaccount SET per_user_daily_limit = :n"),
                    {"n": limit},
                )

        runs: dict[str, list[float]] = {"no daily limit": [], "daily limit 10^6": []}
        snapshot()  # the first call builds and compiles the statement
        for _ in range(3):  # alternating
            with_limit(0)
            runs["no daily limit"] += wall_ms_per_call(snapshot)
            with_limit(10**6)
            runs["daily limit 10^6"] += wall_ms_per_call(snapshot)
    print(f"{RECIPIENTS} recipients, {args.sends_today} sent today by the creator")
    for name, figures in runs.items():
        print(f"take_snapshot, {name + ':':18} median {statistics.median(figures):6.2f} ms")
    ratio = statistics.median(runs["no daily limit"]) / statistics.median(runs["daily limit 10^6"])
    print(f"ratio (no limit / limit):         {ratio:.2f}")


if __name__ == "__main__":
    main()
