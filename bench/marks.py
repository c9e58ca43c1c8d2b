"""The send path's "sent" marks on their own: CPU and wall time per mark, on psycopg's plain
asynchronous connection and on the marks' connection (its reader kept across marks).

Each run marks a fresh campaign's recipients one after another, as a batch does after each
accepted message, on one connection; the two connections alternate, RUNS times each, on the
worker's event loop (uvloop), against a throwaway PostgreSQL. Medians are printed, and
their ratio (compare within one run of this script: these machines are noisy).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import report_alternation


async def mark_all(url: str, recipient_ids: list[int], plain: bool) -> tuple[float, float]:
    """Milliseconds of this process's CPU and of wall time per mark."""
    import psycopg

    from activities import sent_marks

    connection = psycopg.AsyncConnection if plain else sent_marks._MarksConnection
    conn = await connection.connect(sent_marks.libpq_conninfo(url), autocommit=True)
    marks = sent_marks.SentMarks(conn)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    cpu, wall = time.process_time(), time.perf_counter()
    for recipient_id in recipient_ids:
        await marks.record(recipient_id, f"<{recipient_id}@bench.invalid>", now)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await marks.close()
    return cpu / len(recipient_ids) * 1e3, wall / len(recipient_ids) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="per connection, alternating")
    parser.add_argument("--marks", type=int, default=4000, help="per run")
    args = parser.parse_args()

    from sqlalchemy import text

    from db.engine import get_engine
    from mailer.core.event_loop import run as run_on
    from mailer.stack import seed_data
    from mailer.stack.servers import postgres_cluster

    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with postgres_cluster() as cluster:
        url = cluster.new_database()
        user = seed_data.add_user(url)
        for run in range(2 * args.runs):
            plain = run % 2 == 0
            campaign = seed_data.add_campaign(url, user, args.marks)
            with get_engine(url).connect() as conn:
                ids = list(
                    conn.scalars(
                        text(
                            "SELECT id FROM mailer_campaignrecipient WHERE campaign_id = :c "
                            "ORDER BY id"
                        ),
                        {"c": campaign},
                    )
                )
            results[plain].append(run_on(mark_all(url, ids, plain), "uvloop"))
    report_alternation(
        results,
        ("psycopg's AsyncConnection", "the marks' connection"),
        "mark",
        args.runs,
        "CPU ratio, marks / plain",
    )


if __name__ == "__main__":
    main()
