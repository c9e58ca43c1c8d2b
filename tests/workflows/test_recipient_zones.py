"""Each recipient's own working hours (MAILER_RECIPIENT_TIMEZONES=on) through a simulated day
(time-skipping server): recipients in Vladivostok, Moscow and Kaliningrad each get their
message within their own 09:00–18:00, and the campaign finishes when the forecast says."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from tests.support.harness import Harness, finished, progress_past, skip_to
from workflows.working_hours import WorkingHours, is_working_time, next_working_start

ZONES = ("Asia/Vladivostok", "Europe/Moscow", "Europe/Kaliningrad")
SEED_HOURS = (9, 18)
# The recipients' zones decide here, not the one mailer runs in (the harness's, which
# `--harness-timezone` moves): the tests' times are Moscow's whatever that is.
MOSCOW = ZoneInfo("Europe/Moscow")


async def next_monday_3(env: WorkflowEnvironment) -> datetime:
    """Next Monday 03:00 in Moscow: Vladivostok's working day has begun (10:00 there),
    Moscow's and Kaliningrad's have not."""
    day = (await env.get_current_time()).astimezone(MOSCOW).date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime.combine(day, time(3), tzinfo=MOSCOW)


async def in_zones_at_monday_3(
    env: WorkflowEnvironment, harness: Harness, campaign: str, *zones: str
) -> datetime:
    """The campaign's recipients spread over ``zones`` in turn, and the clock moved to the
    next Monday 03:00 Moscow; that time."""
    harness.sql_exec(
        "UPDATE mailer_campaignrecipient SET timezone = (CAST(:zones AS text[]))"
        "[1 + id % :n] WHERE campaign_id = :id",
        zones=list(zones),
        n=len(zones),
        id=campaign,
    )
    start = await next_monday_3(env)
    await skip_to(env, start)
    return start


def opening(start: datetime, name: str) -> datetime:
    """When a recipient in ``name`` may first get mail after ``start`` (the calendar's
    own functions: their start when open, else the next 09:00 there)."""
    hours = WorkingHours(name, *SEED_HOURS)
    return start if is_working_time(start, hours) else next_working_start(start, hours)


def local_sends(harness: Harness, campaign: str) -> dict[str, list[datetime]]:
    """Each zone's send times, in that zone."""
    rows = harness.sql(
        "SELECT r.timezone, l.created_at FROM mailer_sendlog l JOIN mailer_campaignrecipient r "
        "ON r.id = l.recipient_id WHERE l.campaign_id = :c AND l.status = 'sent'",
        c=campaign,
    )
    found: dict[str, list[datetime]] = {}
    for name, at in rows:
        found.setdefault(str(name), []).append(at.astimezone(ZoneInfo(str(name))))  # type: ignore[attr-defined]
    return found


async def test_each_recipient_gets_mail_within_their_own_working_hours(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(60)
    start = await in_zones_at_monday_3(time_env, harness, campaign, *ZONES)
    async with harness.worker(recipient_timezones=True):
        handle = await harness.start(campaign)
        result = await finished(handle)
    assert result.sent == 60

    sends = local_sends(harness, campaign)
    assert sorted(sends) == sorted(ZONES)
    for name, times in sends.items():
        assert len(times) == 20
        assert all(SEED_HOURS[0] <= t.hour < SEED_HOURS[1] for t in times), (name, times)
        first = min(times)
        assert opening(start, name) <= first < opening(start, name) + timedelta(minutes=1), name
    # Vladivostok at the start; the rest waited for their own morning, not Moscow's.
    assert min(sends["Asia/Vladivostok"]).hour == 10
    assert min(sends["Europe/Kaliningrad"]).astimezone(MOSCOW).hour == 10
    last = max(t for times in sends.values() for t in times)
    assert last < max(opening(start, name) for name in ZONES) + timedelta(minutes=1)


async def test_the_campaign_waits_as_outside_hours_until_the_next_zone_opens(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """Only Kaliningrad recipients, at 03:00 Moscow: deferred ``outside_hours`` until 09:00
    Kaliningrad (10:00 Moscow) — not Moscow's 09:00."""
    campaign = harness.ready_campaign(5)
    start = await in_zones_at_monday_3(time_env, harness, campaign, "Europe/Kaliningrad")
    async with harness.worker(recipient_timezones=True):
        handle = await harness.start(campaign)
        state = await progress_past(handle, "starting", "sending")
        assert (state.state, state.defer_reason) == ("deferred", "outside_hours")
        assert state.deferred_until == opening(start, "Europe/Kaliningrad")
        await finished(handle)
