"""``mailer simulate``: invariants checked against its JSON, on several scenarios."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import text
from typer.testing import CliRunner

from db.engine import get_engine
from mailer.stack import seed_data
from starter import app

runner = CliRunner()
MONDAY = "2026-12-07T09:00+03:00"  # a Monday, Moscow time


@pytest.fixture(autouse=True)
def _settings(mailer_env: dict[str, str]) -> None:
    """Defaults come from this test's (empty) database: no account, so no daily limit."""


def simulate(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["simulate", "--json", *args])
    assert result.exit_code == 0, result.output
    forecast: dict[str, Any] = json.loads(result.stdout)
    return forecast


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def check_invariants(
    forecast: dict[str, Any], *, rate: int = 100, hours: tuple[int, int] = (9, 18), daily: int = 0
) -> None:
    per_day: Counter[str] = Counter()
    for hour in forecast["hours"]:
        moment = at(hour["hour"])
        assert moment.utcoffset() == timedelta(hours=3), "times carry the zone's offset"
        assert hours[0] <= moment.hour < hours[1], f"a send outside working hours: {hour}"
        assert hour["sent"] + hour["failed"] <= rate, f"over the hourly rate: {hour}"
        per_day[hour["hour"][:10]] += hour["sent"]
    if daily:
        assert max(per_day.values()) <= daily
    for deferral in forecast["deferrals"]:
        start, until = at(deferral["from"]), at(deferral["until"])
        assert until > start
        reason = deferral["reason"]
        if reason == "outside_hours":
            assert (until.hour, until.minute) == (hours[0], 0)
            assert until - start <= timedelta(hours=24)
        elif reason == "rate_per_hour":
            assert until == start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        elif reason == "daily_limit":
            assert (until.hour, until.minute) == (hours[0], 0) and until.date() > start.date()
        elif reason == "transient_error":
            # The retry delay after a session error; or, when only recipients waiting on
            # their own 4xx retry are left, the first of those (5 to 60 minutes out).
            assert until - start <= timedelta(minutes=60)
    assert forecast["sent"] == sum(h["sent"] for h in forecast["hours"])


def test_seed_limits_forecast() -> None:
    forecast = simulate("--recipients", "1000", "--start", MONDAY, "--rate-per-hour", "100")
    check_invariants(forecast)
    assert (forecast["status"], forecast["sent"], forecast["pending"]) == ("sent", 1000, 0)
    assert forecast["started_at"] == "2026-12-07T09:00:00+03:00"
    assert forecast["completed_at"].startswith("2026-12-08T09:0")
    reasons = Counter(d["reason"] for d in forecast["deferrals"])
    assert reasons == {"rate_per_hour": 9, "outside_hours": 1}
    assert forecast["wall_seconds"] > 0


def test_daily_limit_across_two_campaigns() -> None:
    forecast = simulate(
        "--recipients", "300", "--campaigns", "2", "--start", MONDAY, "--daily-limit", "250"
    )
    check_invariants(forecast, daily=250)
    assert forecast["status"] == "sent" and forecast["sent"] == 600
    daily = [d for d in forecast["deferrals"] if d["reason"] == "daily_limit"]
    assert daily and {d["campaign"] for d in daily} == {0, 1}


def test_quota_never_exceeded_then_refilled() -> None:
    forecast = simulate(
        "--recipients",
        "500",
        "--start",
        MONDAY,
        "--quota",
        "150",
        "--quota-refill",
        "1000@2026-12-08T12:00+03:00",
    )
    check_invariants(forecast)
    before_refill = sum(
        h["sent"] for h in forecast["hours"] if at(h["hour"]) < at("2026-12-08T12:00+03:00")
    )
    assert before_refill == 150
    assert any(d["reason"] == "quota_exhausted" for d in forecast["deferrals"])
    assert forecast["status"] == "sent" and forecast["sent"] == 500


def test_breaker_pauses_after_exactly_the_threshold() -> None:
    forecast = simulate("--recipients", "20", "--start", MONDAY, "--fail", "all:451")
    check_invariants(forecast)
    assert (forecast["status"], forecast["sent"], forecast["pending"]) == ("paused", 0, 20)
    transient = [d for d in forecast["deferrals"] if d["reason"] == "transient_error"]
    assert len(transient) == 9  # the 10th error trips the breaker instead of deferring
    assert forecast["completed_at"] is None


def test_permanent_failures_and_a_window_of_transient_ones() -> None:
    forecast = simulate(
        "--recipients",
        "300",
        "--start",
        MONDAY,
        "--fail",
        "r0-1?@simulation.invalid:550",
        "--fail",
        "all:451@2026-12-07T10:00+03:00/30m",
    )
    check_invariants(forecast)
    assert (forecast["status"], forecast["failed"], forecast["sent"]) == ("sent", 10, 290)
    transient = [d for d in forecast["deferrals"] if d["reason"] == "transient_error"]
    assert transient, "the window caused no deferral"
    for deferral in transient:
        assert at("2026-12-07T10:00+03:00") <= at(deferral["from"]) < at("2026-12-07T10:30+03:00")


def test_a_greylisting_domain_waits_while_the_other_domains_finish() -> None:
    forecast = simulate(
        "--recipients",
        "300",
        "--domains",
        "corp.example=20,example.com=80",
        "--start",
        MONDAY,
        "--fail",
        "*@corp.example:450 4.7.1 Greylisted, please try again later@2026-12-07T09:00+03:00/4h",
    )
    check_invariants(forecast)
    assert (forecast["status"], forecast["sent"], forecast["failed"]) == ("sent", 300, 0)
    domains = {d["domain"]: d for d in forecast["domains"]}
    corp, other = domains["corp.example"], domains["example.com"]
    assert (corp["sent"], corp["waited"]) == (60, 60)
    assert (other["sent"], other["waited"]) == (240, 0)
    # The rest kept the full hourly rate (their tokens were not held by the waiting ones)
    # and finished in three hours; corp.example's went once its servers let them.
    assert at(other["last_sent_at"]) < at("2026-12-07T11:30+03:00")
    assert at(corp["last_sent_at"]) >= at("2026-12-07T13:00+03:00")
    assert [h["sent"] for h in forecast["hours"]][:2] == [100, 100]


def test_until_stops_early() -> None:
    forecast = simulate(
        "--recipients", "1000", "--start", MONDAY, "--until", "2026-12-07T12:30+03:00"
    )
    check_invariants(forecast)
    assert (forecast["status"], forecast["sent"], forecast["completed_at"]) == (
        "running",
        400,
        None,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--recipients", "10", "--working-hours", "18-9"],
            "error: --working-hours: start 18 must be before end 9",
        ),
        (
            ["--recipients", "10", "--start", "2026-12-07T09:00"],
            "error: --start: '2026-12-07T09:00' has no UTC offset",
        ),
        (["--recipients", "10", "--quota", "-1"], "error: --quota: must be 0 or more, got -1"),
        (
            ["--recipients", "10", "--fail", "all:250"],
            "error: --fail: '250' in 'all:250' is not an SMTP error code",
        ),
        (
            ["--recipients", "10", "--fail", "all:451@2026-12-07T10:00+03:00/soon"],
            "error: --fail: 'soon' is not a duration",
        ),
        (
            ["--recipients", "10", "--quota-refill", "lots@2026-12-07T10:00+03:00"],
            "error: --quota-refill: 'lots@2026-12-07T10:00+03:00' is not N@TIME",
        ),
        (
            ["--recipients", "10", "--timezone", "Mars/Base"],
            "error: --timezone: unknown time zone 'Mars/Base'",
        ),
        (["--recipients", "0"], "error: --recipients: must be 1 or more, got 0"),
        (
            ["--recipients", "10", "--working-days", "mon-fr"],
            "error: --working-days: 'mon-fr' is not a day or a range of days",
        ),
        (
            ["--recipients", "10", "--holidays", "XX"],
            "error: --holidays: 'XX' is not a country the holidays package knows",
        ),
        ([], "error: --recipients: give --recipients N or --campaign CAMPAIGN_ID"),
        (["--campaign", "not-a-uuid"], "error: --campaign: 'not-a-uuid' is not a campaign UUID"),
    ],
)
def test_invalid_options_are_one_line_naming_the_option(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)


def test_forecast_for_an_existing_campaign_reads_the_real_database(
    mailer_env: dict[str, str],
) -> None:
    url = mailer_env["MAILER_DATABASE_URL"]
    user = seed_data.add_user(url)
    seed_data.set_account(url, smtp_port=25, daily_limit=30)
    seed_data.set_quota(url, 45)
    campaign = seed_data.add_campaign(url, user, 50)
    before = factories_snapshot(url)
    forecast = simulate("--campaign", campaign, "--start", MONDAY)
    check_invariants(forecast, daily=30)
    # 50 pending, but the real quota (45) runs out and nothing refills it.
    assert (forecast["sent"], forecast["pending"], forecast["status"]) == (45, 5, "running")
    assert any(d["reason"] == "daily_limit" for d in forecast["deferrals"])
    assert factories_snapshot(url) == before, "the real database was written to"


def factories_snapshot(url: str) -> tuple[object, ...]:
    with get_engine(url).connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM mailer_sendlog), "
                    "(SELECT emails_available FROM mailer_smtpbzquota), "
                    "(SELECT count(*) FROM mailer_campaignrecipient WHERE status = 'pending')"
                )
            ).one()
        )


def test_a_mail_ru_heavy_list_is_paced_as_configured() -> None:
    common = ["--recipients", "600", "--rate-per-hour", "100000", "--working-hours", "0-24"]
    common += ["--start", MONDAY, "--domains", "mail.ru=70,bk.ru=10,gmail.com=20"]
    paced = simulate(*common, "--domain-rate-per-minute", "mail.ru,bk.ru=20")
    free = simulate(*common, "--domain-rate-per-minute", "")
    assert paced["status"] == free["status"] == "sent" and paced["sent"] == 600
    # 480 recipients of the mail.ru group at 20 a minute: the 24th minute; gmail.com is not
    # held back by them (it all goes in the first minute).
    finished = at(paced["completed_at"]) - at(MONDAY)
    assert timedelta(minutes=23) <= finished < timedelta(minutes=24)
    assert at(free["completed_at"]) - at(MONDAY) < timedelta(minutes=1)
    assert {d["reason"] for d in paced["deferrals"]} == {"rate_per_hour"}
    assert len(paced["deferrals"]) == 23


def test_working_days_and_russian_holidays_are_forecast() -> None:
    """From Wednesday 30 December 2026: 900 that day; 31 December is a day off in Russia
    (the government's transfer), 1–8 January the New Year holidays, 9–10 a weekend: the rest
    on Monday 11 January from 09:00."""
    forecast = simulate(
        "--recipients", "1500", "--start", "2026-12-30T09:00+03:00",
        "--working-days", "mon-fri", "--holidays", "RU",
    )  # fmt: skip
    per_day: Counter[str] = Counter()
    for hour in forecast["hours"]:
        per_day[hour["hour"][:10]] += hour["sent"]
    assert +per_day == {"2026-12-30": 900, "2027-01-11": 600}
    assert forecast["completed_at"].startswith("2027-01-11T14:")
    resume = [d for d in forecast["deferrals"] if d["reason"] == "outside_hours"]
    assert [d["until"] for d in resume] == ["2027-01-11T09:00:00+03:00"]


def test_a_working_saturday_from_a_dates_file_is_forecast(tmp_path: Path) -> None:
    dates = tmp_path / "dates.txt"
    dates.write_text("2026-12-09\n2026-12-12 working\n")  # Wednesday off; Saturday on
    forecast = simulate(
        "--recipients", "4000", "--start", MONDAY, "--working-days", "mon-fri",
        "--holidays-file", str(dates),
    )  # fmt: skip
    days = sorted({hour["hour"][:10] for hour in forecast["hours"] if hour["sent"]})
    assert days == ["2026-12-07", "2026-12-08", "2026-12-10", "2026-12-11", "2026-12-12"]


async def test_the_forecasts_servers_start_together_and_leave_nothing_behind() -> None:
    from mailer.simulate.servers import ThrowawayServers

    with ThrowawayServers() as servers:
        urls = await servers.ready()
        database = urls.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM mailer_campaign").fetchone() == (0,)
        assert redis_lib.Redis.from_url(urls.redis_url).ping()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(database, connect_timeout=5)
    with pytest.raises(redis_lib.ConnectionError):
        redis_lib.Redis.from_url(urls.redis_url, socket_connect_timeout=5).ping()
