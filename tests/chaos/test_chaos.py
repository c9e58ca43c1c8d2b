"""The reliability report's faults as tests, on the embedded stack with real worker
processes: nothing lost, nothing recorded wrong, and a repeat only of a message that was in
flight, with its first Message-ID.

The full set is marked ``chaos`` (``make chaos`` prints their table; ``pytest -m chaos``
runs them as tests); ``make test`` runs the short versions below them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.faults import scenarios
from bench.faults.rig import Outcome, Stack, running_stack

# A crash repeats at most the two messages in flight: the one whose "sent" mark was
# committing and the one on the wire.
IN_FLIGHT = 2


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running


def assert_clean(outcome: Outcome, *, repeats_per_fault: int = IN_FLIGHT) -> None:
    notes = "; ".join(outcome.notes)
    assert outcome.lost == 0, f"{outcome.fault}: {outcome.lost} lost ({notes})"
    assert outcome.ledger_mismatches == 0, f"{outcome.fault}: ledger mismatches ({notes})"
    assert outcome.duplicates_kept_message_id, f"{outcome.fault}: a repeat got a new Message-ID"
    assert outcome.duplicated <= repeats_per_fault * outcome.injected, notes


# --- the short selection `make test` runs -------------------------------------------------


async def test_a_killed_worker_loses_nothing(stack: Stack) -> None:
    outcome = await scenarios.worker_killed(stack, recipients=300, kills=1)
    assert outcome.delivered == outcome.recipients == 300
    assert_clean(outcome)


async def test_redis_down_fails_open_and_the_window_catches_up(stack: Stack) -> None:
    outcome = await scenarios.redis_down(stack, recipients=300, outage_seconds=3)
    assert outcome.delivered == outcome.recipients == 300
    assert_clean(outcome, repeats_per_fault=0)


async def test_three_workers_share_one_window_and_each_takes_batches(stack: Stack) -> None:
    outcome = await scenarios.workers_one_window(
        stack, workers=3, campaigns=3, recipients=100, rate_per_hour=200
    )
    assert outcome.duplicated == 0
    assert_clean(outcome)
    sent_per_hour = outcome.details["sent_per_hour"]
    assert sum(sent_per_hour) >= 200 - 3 and max(sent_per_hour) <= 200, outcome.notes
    assert all(batches > 0 for batches in outcome.details["batches_per_worker"]), outcome.notes


# --- the full report ----------------------------------------------------------------------


@pytest.mark.chaos
async def test_five_kills_during_a_3000_recipient_campaign(stack: Stack) -> None:
    outcome = await scenarios.worker_killed(stack)
    assert outcome.delivered == outcome.recipients == 3000
    assert_clean(outcome)


@pytest.mark.chaos
async def test_temporal_restart_mid_campaign(stack: Stack) -> None:
    outcome = await scenarios.temporal_restarted(stack)
    assert outcome.delivered == outcome.recipients
    assert_clean(outcome)


@pytest.mark.chaos
async def test_postgres_down_20_seconds(stack: Stack) -> None:
    outcome = await scenarios.postgres_down(stack)
    assert outcome.delivered == outcome.recipients
    assert_clean(outcome)


@pytest.mark.chaos
async def test_redis_down_20_seconds(stack: Stack) -> None:
    outcome = await scenarios.redis_down(stack)
    assert outcome.delivered == outcome.recipients
    assert_clean(outcome, repeats_per_fault=0)


@pytest.mark.chaos
async def test_a_451_storm_trips_the_breaker_at_the_threshold(stack: Stack) -> None:
    outcome = await scenarios.transient_storm(stack)
    assert outcome.injected == 10
    assert outcome.delivered == outcome.recipients
    assert_clean(outcome, repeats_per_fault=0)


@pytest.mark.chaos
async def test_two_workers_share_one_hourly_window(stack: Stack) -> None:
    outcome = await scenarios.two_workers_one_window(stack)
    assert outcome.duplicated == 0
    assert_clean(outcome)


@pytest.mark.chaos
async def test_a_hanging_smtp_server_leaves_no_stuck_batch(stack: Stack) -> None:
    outcome = await scenarios.hanging_server(stack)
    assert outcome.delivered == outcome.recipients
    assert_clean(outcome, repeats_per_fault=0)
