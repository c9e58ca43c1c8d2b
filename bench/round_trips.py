"""SQL statements (round trips to PostgreSQL) per ledger call: the gates' snapshot, a
batch's planning and recording a state, counted with SQLAlchemy's ``before_cursor_execute``
on a throwaway database — what costs where the database is across a network — and the
worker's CPU per call (this thread's CPU time, median of rounds: building, compiling and
executing the statements, and reading the rows; PostgreSQL's own time is not in it), and
recording a state's wall time. Run it on two checkouts to compare
(``python bench/round_trips.py``)."""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ms_per_call  # (the repository on the path, no .env files)

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
ROUNDS, CALLS = 7, 100


def cpu_ms_per_call(call: Callable[[], object]) -> float:
    """This thread's CPU time per call, in ms: the median of ROUNDS rounds of CALLS calls."""
    call()  # the first builds and compiles what later calls reuse
    return statistics.median(ms_per_call(call, clock=time.thread_time, rounds=ROUNDS, calls=CALLS))


def main() -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from activities.claims import Claim, plan_batch
    from activities.ledger import record_state, take_snapshot
    from db.engine import get_engine, session_scope
    from mailer.core.settings import load_settings
    from mailer.stack import seed_data
    from mailer.stack.throwaway import postgres_cluster

    with postgres_cluster() as cluster:
        url = cluster.new_database()
        seed_data.set_account(url, smtp_port=25, daily_limit=50)
        seed_data.set_quota(url, 100)
        campaign = seed_data.add_campaign(url, seed_data.add_user(url), 10)
        seed_data.sql_execute(
            url, "UPDATE mailer_campaign SET status = 'sending' WHERE id = :c", c=campaign
        )
        # Its queue row, as a started campaign between batches has it (each batch marks it
        # processing; the batch's end sets it pending again).
        seed_data.sql_execute(
            url,
            "INSERT INTO mailer_campaignqueue (campaign_id, status, queued_at)"
            " VALUES (:c, 'pending', now())",
            c=campaign,
        )
        settings = load_settings(database_url=url)
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        def record() -> None:
            """What the record_state activity does: the state, then the snapshot after it."""
            with session_scope(url) as session:
                record_state(
                    session,
                    uuid.UUID(campaign),
                    NOW,
                    campaign_status="sending",
                    queue_status="pending",
                    defer_reason="rate_per_hour",
                    deferred_until=NOW + timedelta(minutes=30),
                    consecutive_transient_errors=0,
                    last_error="",
                    expected_statuses=("ready", "sending"),
                )
                session.flush()
                take_snapshot(session, uuid.UUID(campaign), NOW, settings)

        event.listen(get_engine(url), "before_cursor_execute", count)
        with session_scope(url) as session:
            take_snapshot(session, uuid.UUID(campaign), NOW, settings)
        print(f"snapshot: {statements} statement(s)")
        statements = 0
        with session_scope(url) as session:
            claim = Claim("bench", timedelta(minutes=1))
            plan_batch(session, uuid.UUID(campaign), NOW, 5, settings, claim)
        print(f"planning a batch (with a daily limit): {statements} statement(s)")
        statements = 0
        record()
        print(f"recording a state (the record_state activity): {statements} statement(s)")
        event.remove(get_engine(url), "before_cursor_execute", count)

        def snapshot() -> None:
            with session_scope(url) as session:
                take_snapshot(session, uuid.UUID(campaign), NOW, settings)

        def plan() -> None:
            with Session(get_engine(url)) as session:  # rolled back: the same plan each time
                plan_batch(session, uuid.UUID(campaign), NOW, 5, settings, claim)
                session.rollback()

        print(f"snapshot: {cpu_ms_per_call(snapshot):.2f} ms of CPU per call")
        print(f"planning a batch: {cpu_ms_per_call(plan):.2f} ms of CPU per call")
        print(f"recording a state: {cpu_ms_per_call(record):.2f} ms of CPU per call")
        wall = statistics.median(ms_per_call(record, clock=time.perf_counter, rounds=7, calls=50))
        print(f"recording a state: {wall:.2f} ms of wall time per call (round trips included)")


if __name__ == "__main__":
    main()
