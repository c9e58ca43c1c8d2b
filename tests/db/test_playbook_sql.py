"""Every SQL block of the playbook's sections 1, 2 and 5 runs unchanged on our schema."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.support.playbook import CANDIDATES, fill, sql_blocks


def test_the_copy_in_docs_matches_the_seed() -> None:
    seed, copy = CANDIDATES
    if not seed.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert copy.read_text() == seed.read_text()


def test_playbook_has_the_expected_blocks() -> None:
    assert len(sql_blocks()) >= 10


def test_every_block_runs_unchanged(engine: Engine, seeded: dict[str, object]) -> None:
    ran = 0
    for heading, sql in sql_blocks():
        assert "<" not in fill(sql, seeded).replace("<=", "").replace("< ", ""), heading
        with engine.begin() as conn:
            conn.exec_driver_sql(fill(sql, seeded))
        ran += 1
    assert ran == len(sql_blocks())


def _run(engine: Engine, sql: str, values: dict[str, object]) -> list[tuple[object, ...]]:
    with engine.begin() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(fill(sql, values)).all()]


def block(fragment: str) -> str:
    return next(sql for _, sql in sql_blocks() if fragment in sql)


def test_the_blocks_tell_the_truth(engine: Engine, seeded: dict[str, object]) -> None:
    sent_today = _run(engine, block("as sent_today"), seeded)
    assert sent_today == [(3,)]
    stuck = _run(engine, block("minutes_stuck"), seeded)
    assert [row[1] for row in stuck] == [seeded["stuck"]]
    active = _run(engine, block("WHERE status IN ('pending', 'processing')"), seeded)
    assert len(active) == 3
    reasons = _run(engine, block("GROUP BY defer_reason"), seeded)
    assert [row[:2] for row in reasons] == [("rate_per_hour", 1)]
    quota = _run(engine, block("sync_error\nFROM mailer_smtpbzquota"), seeded)
    assert quota[0][0] == 0 and quota[0][3] == "HTTP 401"
    stats = {row[1]: row[7:10] for row in _run(engine, block("as queue_status"), seeded)}
    assert stats["sending"] == (2, 3, 0)
    last_hour = _run(engine, block("campaigns_count"), seeded)
    assert last_hour == [(3, 1)]
