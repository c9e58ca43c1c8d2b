"""Working days and holidays through simulated weeks (time-skipping server): weekends and a
country's public holidays are skipped, a transferred working Saturday is used."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import holidays
import pytest
from temporalio.testing import WorkflowEnvironment

from mailer.runtime.worker import ensure_search_attributes
from mailer.stack import seed_data
from mailer.stack.binaries import temporal_test_server_binary
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer
from tests.support.harness import (
    SERVER_STARTUP,
    Harness,
    finished,
    make_settings,
    new_task_queue,
    skip_to,
    zone,
)


async def _next(env: WorkflowEnvironment, weekday: int, hour: int) -> datetime:
    """The first ``weekday`` (0 = Monday) at ``hour``:00, harness zone, after now."""
    day = (await env.get_current_time()).astimezone(zone()).date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=zone())


def per_day(harness: Harness, campaign: str) -> dict[date, int]:
    return dict(Counter(t.date() for t in harness.sent_times(campaign)))


async def test_a_friday_evening_start_with_mon_fri_resumes_on_monday_morning(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 150)
    friday = await _next(time_env, 4, 17)
    await skip_to(time_env, friday)
    async with harness.worker(working_days="mon-fri"):
        result = await finished(await harness.start(campaign))
    assert result.sent == 150
    monday = friday.date() + timedelta(days=3)
    assert per_day(harness, campaign) == {friday.date(): 100, monday: 50}
    first_monday = min(t for t in harness.sent_times(campaign) if t.date() == monday)
    assert (first_monday.hour, first_monday.minute) == (9, 0)


async def test_a_file_declared_working_saturday_is_used(
    time_env: WorkflowEnvironment, harness: Harness, tmp_path: Path
) -> None:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 150)
    friday = await _next(time_env, 4, 17)
    saturday = friday.date() + timedelta(days=1)
    dates = tmp_path / "dates.txt"
    dates.write_text(f"# a government's transfer\n{saturday.isoformat()} working\n")
    await skip_to(time_env, friday)
    async with harness.worker(working_days="mon-fri", holidays_file=dates):
        result = await finished(await harness.start(campaign))
    assert result.sent == 150
    assert per_day(harness, campaign) == {friday.date(): 100, saturday: 50}


def first_working_day_after(day: date) -> date:
    """By the holidays package itself: Monday to Friday, not a Russian public holiday, or
    a transferred working day."""
    calendar = holidays.country_holidays("RU", years=[day.year, day.year + 1])
    candidate = day
    while True:
        candidate += timedelta(days=1)
        working = candidate.weekday() < 5 or candidate in calendar.weekend_workdays
        if working and candidate not in calendar:
            return candidate


@pytest.fixture
async def near_now(
    database_url: str, redis_url: str, sink: SmtpSink, stub: SmtpBzStubServer
) -> AsyncIterator[tuple[WorkflowEnvironment, Harness]]:
    """A time-skipping server of its own, its clock at the present: the session's has been
    skipped years ahead by other tests, past the holidays package's calendars."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_binary(),
        test_server_startup_timeout=SERVER_STARTUP,
    )
    await ensure_search_attributes(env.client, env.client.namespace)
    settings = make_settings(database_url, redis_url, stub.base_url)
    yield env, Harness(env.client, settings, sink, stub, database_url, new_task_queue())
    await env.shutdown()


async def test_a_new_years_eve_start_with_ru_holidays_waits_for_the_first_working_day(
    near_now: tuple[WorkflowEnvironment, Harness],
) -> None:
    """Russia's New Year holidays (1–8 January) are skipped — the package's calendar of the
    coming New Year (2027's when run in 2026); 31 December itself sends only if the package
    says it works (in 2026 it is a day off, moved from 3 January)."""
    time_env, harness = near_now
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 150)
    now = (await time_env.get_current_time()).astimezone(zone())
    eve = datetime(now.year, 12, 31, 17, tzinfo=zone())
    if eve <= now:
        eve = datetime(now.year + 1, 12, 31, 17, tzinfo=zone())
    await skip_to(time_env, eve)
    async with harness.worker(working_days="mon-fri", holidays="RU"):
        result = await finished(await harness.start(campaign))
    assert result.sent == 150
    january = first_working_day_after(eve.date())
    assert january >= date(eve.year + 1, 1, 9)  # after the New Year holidays
    on_eve = 100 if first_working_day_after(eve.date() - timedelta(days=1)) == eve.date() else 0
    assert per_day(harness, campaign) == {
        **({eve.date(): on_eve} if on_eve else {}),
        january: 150 - on_eve,
    }
    first = min(t for t in harness.sent_times(campaign) if t.date() == january)
    assert (first.hour, first.minute) == (9, 0)
