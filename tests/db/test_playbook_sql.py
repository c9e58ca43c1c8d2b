"""Every SQL block of the playbook's sections 1, 2 and 5 runs unchanged on our schema."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from tests.playbook import CANDIDATES, sql_blocks


def test_the_copy_in_docs_matches_the_seed() -> None:
    seed, copy = CANDIDATES
    if not seed.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert copy.read_text() == seed.read_text()


def test_playbook_has_the_expected_blocks() -> None:
    assert len(sql_blocks()) >= 10


@pytest.fixture
def seeded(engine: Engine) -> dict[str, object]:
    """A user with a sending, a deferred and a stuck campaign, recipients and send logs."""
    ids = {"sending": uuid.uuid4(), "deferred": uuid.uuid4(), "stuck": uuid.uuid4()}
    with engine.begin() as conn:
        user_id = conn.scalar(
            text("INSERT INTO accounts_user (username) VALUES ('olga') RETURNING id")
        )
        for label, campaign_id in ids.items():
            conn.execute(
                text(
                    "INSERT INTO mailer_campaign (id, name, status, subject, created_by_id) "
                    "VALUES (:id, :name, 'sending', 'S', :user)"
                ),
                {"id": campaign_id, "name": label, "user": user_id},
            )
        conn.execute(
            text(
                "INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until, "
                "consecutive_transient_errors, started_at) VALUES "
                "(:sending, 'processing', '', NULL, 0, now()), "
                "(:deferred, 'pending', 'rate_per_hour', now() + interval '20 minutes', 0, NULL), "
                "(:stuck, 'processing', '', NULL, 3, now() - interval '45 minutes')"
            ),
            {k: v for k, v in ids.items()},
        )
        for i in range(5):
            status = "sent" if i < 3 else "pending"
            recipient_id = conn.scalar(
                text(
                    "INSERT INTO mailer_campaignrecipient (campaign_id, email, status) "
                    "VALUES (:c, :e, :s) RETURNING id"
                ),
                {"c": ids["sending"], "e": f"r{i}@example.com", "s": status},
            )
            if status == "sent":
                conn.execute(
                    text(
                        "INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, created_at) "
                        "VALUES (:c, :r, :e, 'smtp_global', 'sent', now())"
                    ),
                    {"c": ids["sending"], "r": recipient_id, "e": f"r{i}@example.com"},
                )
        queue_id = conn.scalar(
            text("SELECT id FROM mailer_campaignqueue WHERE campaign_id = :c"), {"c": ids["stuck"]}
        )
        conn.execute(
            text("UPDATE mailer_smtpbzquota SET emails_available = 0, sync_error = 'HTTP 401'")
        )
    return {"user_id": user_id, "campaign": ids["deferred"], "queue_id": queue_id, **ids}


def fill(sql: str, values: dict[str, object]) -> str:
    return (
        sql.replace("<campaign_uuid>", str(values["campaign"]))
        .replace("<campaign_id>", f"'{values['campaign']}'")
        .replace("<user_id>", str(values["user_id"]))
        .replace("<queue_id>", str(values["queue_id"]))
        .replace("<email>", "someone@example.org")
    )


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
