"""Reservations made while the batch is being cancelled are undone, not leaked; statements
running when it is cancelled finish before their connection closes."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SAWarning

from activities.claims import Claim, plan_batch
from activities.ratelimit import RateLimiter
from activities.sending import BatchHooks, BatchSender, _finish_even_if_cancelled, _Tally
from db.engine import get_engine, session_scope
from mailer.core.settings import load_settings
from mailer.stack import seed_data
from mailer.stack.throwaway import RedisServer
from tests.support.harness import wait_for

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)  # a Monday, 13:00 in Moscow


async def test_work_finishes_and_is_undone_when_cancelled_meanwhile() -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    undone: list[int] = []

    async def reserve() -> int:
        started.set()
        await finish.wait()
        return 7

    async def undo(granted: int) -> None:
        undone.append(granted)

    task = asyncio.create_task(_finish_even_if_cancelled(reserve(), undo=undo))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # the reservation is still being made: it is waited for
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert undone == [7]


async def test_work_that_finishes_is_kept() -> None:
    undone: list[int] = []

    async def reserve() -> int:
        return 3

    async def undo(granted: int) -> None:
        undone.append(granted)

    assert await _finish_even_if_cancelled(reserve(), undo=undo) == 3
    assert undone == []


async def test_the_batch_end_lets_a_running_lease_renewal_finish_before_closing(
    database_url: str, redis: RedisServer
) -> None:
    """The keep-alive is cancelled when the batch ends, often in the middle of a renewal
    running in its thread: the renewal commits, then its connection closes (closing it
    under the statement would roll the renewal back, with SQLAlchemy's "transaction already
    deassociated" warning)."""
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25)
    seed_data.set_quota(database_url, 1000)
    campaign = uuid.UUID(seed_data.add_campaign(database_url, user, 3))
    lease = timedelta(seconds=0.3)  # a beat every 0.06 s, a renewal every 0.1 s
    engine = get_engine(database_url)
    settings = load_settings(database_url=database_url, rate_per_hour=100_000)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE mailer_campaign SET status = 'sending' WHERE id = :c"), {"c": campaign}
        )
    with session_scope(database_url) as session:
        plan_batch(session, campaign, NOW, 3, settings, Claim("keeper", lease))
    sender = BatchSender(settings, engine, RateLimiter(redis.url))
    hooks = BatchHooks(
        heartbeat=lambda sent, failed: None,
        should_stop=lambda: False,
        attempt_token="keeper",
        now=NOW,
    )

    def claimed_until() -> datetime:
        with engine.connect() as conn:
            return conn.scalar(CLAIMED_UNTIL, {"token": "keeper"})  # type: ignore[no-any-return]

    before = claimed_until()
    with (
        warnings.catch_warnings(record=True) as caught,
        engine.connect() as blocker,
    ):
        warnings.simplefilter("always")
        # Hold the claimed rows, so the keep-alive's renewal waits on them.
        blocker.execute(LOCK_CLAIMED, {"token": "keeper"})
        keeper = asyncio.create_task(
            sender._keep_alive(Claim("keeper", lease), campaign, hooks, _Tally())
        )
        await wait_for(lambda: backends(engine, RENEWAL_WAITING) == 1, timeout=10)
        keeper.cancel()
        done, _ = await asyncio.wait({keeper}, timeout=0.2)
        assert not done  # the renewal is still running: it is waited for
        blocker.commit()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(keeper, timeout=10)
    assert claimed_until() > before  # the renewal was committed, not rolled back
    assert not [w for w in caught if issubclass(w.category, SAWarning)]
    assert backends(engine, BUSY) == 0  # and its connection was closed


CLAIMED_UNTIL = text(
    "SELECT max(claimed_until) FROM mailer_campaignrecipient WHERE claim_token = :token"
)
LOCK_CLAIMED = text("SELECT id FROM mailer_campaignrecipient WHERE claim_token = :token FOR UPDATE")


def backends(engine: Engine, condition: str) -> int:
    """This database's other connections (in ``pg_stat_activity``) that meet ``condition``."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        f" AND pid <> pg_backend_pid() AND {condition}"
    )
    with engine.connect() as conn:
        return int(conn.scalar(text(query)) or 0)


# A renewal blocked on the rows another connection holds; a connection still busy.
RENEWAL_WAITING = "wait_event_type = 'Lock' AND query LIKE 'UPDATE mailer_campaignrecipient%'"
BUSY = "state <> 'idle'"
