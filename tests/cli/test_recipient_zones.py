"""Recipients' own time zones at the CLI (MAILER_RECIPIENT_TIMEZONES=on): the CSV's
``timezone`` column is checked at create and stored, ``mailer status`` shows the pending
recipients per zone and when each zone opens; ``mailer simulate --zones`` forecasts it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from db.engine import get_engine
from mailer.core import settings as settings_module
from mailer.stack import seed_data
from starter import app
from tests.cli.test_simulate import runner, simulate
from tests.support.authoring import create_args, run


@pytest.fixture
def zones_on(monkeypatch: pytest.MonkeyPatch, user: str) -> str:
    monkeypatch.setenv("MAILER_RECIPIENT_TIMEZONES", "on")
    settings_module.get_settings.cache_clear()
    return user


def test_the_timezone_column_is_stored_and_shown_per_zone(
    zones_on: str, files: dict[str, Path], engine: Engine
) -> None:
    files["csv"].write_text(
        "email,name,timezone\n"
        "anna@example.com,Анна,Asia/Vladivostok\n"
        "ivan@example.com,Иван,\n"
        "oleg@example.com,Олег,Europe/Kaliningrad\n"
    )
    result = run(*create_args(files), "--json")
    assert result.exit_code == 0, result.output
    campaign = uuid.UUID(json.loads(result.stdout)["campaign_id"])
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT email, timezone FROM mailer_campaignrecipient WHERE campaign_id = :c"),
            {"c": campaign},
        ).all()
    assert dict(stored) == {
        "anna@example.com": "Asia/Vladivostok",
        "ivan@example.com": "",
        "oleg@example.com": "Europe/Kaliningrad",
    }
    status = json.loads(run("status", str(campaign), "--json").stdout)
    zones = status["zones"]
    assert sorted(zones) == ["Asia/Vladivostok", "Europe/Kaliningrad", "Europe/Moscow"]
    for line in zones.values():
        assert line.startswith("1 pending, ")
        assert "open now" in line or "opens " in line
    closed = [line for line in zones.values() if "opens " in line]
    for line in closed:  # the zone's own 09:00
        opens = datetime.fromisoformat(line.split("opens ")[1].split(" ")[0])
        assert (opens.hour, opens.minute) == (9, 0)


def test_an_unknown_zone_is_one_line_naming_the_row_and_nothing_is_written(
    zones_on: str, files: dict[str, Path], engine: Engine
) -> None:
    files["csv"].write_text(
        "email,name,timezone\nanna@example.com,Анна,Asia/Vladivostok\n"
        "ivan@example.com,Иван,Mars/Olympus\n"
    )
    result = run(*create_args(files))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {files['csv']}:3: timezone: 'Mars/Olympus' is not an IANA time zone "
        "(such as Europe/Moscow or Asia/Vladivostok)"
    )
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM mailer_campaign")) == 0


def test_without_the_setting_the_column_is_only_a_template_variable(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    files["csv"].write_text("email,name,timezone\nanna@example.com,Анна,MSK\n")
    result = run(*create_args(files, **{"--subject": "Hi {{ timezone }}"}), "--json")
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT timezone FROM mailer_campaignrecipient")) == ""


def test_a_vladivostok_to_kaliningrad_list_is_forecast_zone_by_zone(mailer_env: object) -> None:
    """03:00 Moscow on a Monday: Vladivostok's 100 go at once (10:00 there), Moscow's at
    09:00, Kaliningrad's at 09:00 Kaliningrad (10:00 Moscow); done by 10:00 Moscow."""
    forecast = simulate(
        "--recipients",
        "300",
        "--start",
        "2026-12-07T03:00+03:00",
        "--zones",
        "Asia/Vladivostok=1,Europe/Moscow=1,Europe/Kaliningrad=1",
    )
    assert forecast["status"] == "sent" and forecast["sent"] == 300
    assert forecast["completed_at"].startswith("2026-12-07T10:00")
    zones = {z["zone"]: z for z in forecast["zones"]}
    assert {name: z["first_sent_at"][:16] for name, z in zones.items()} == {
        "Asia/Vladivostok": "2026-12-07T10:00",
        "Europe/Moscow": "2026-12-07T09:00",
        "Europe/Kaliningrad": "2026-12-07T09:00",
    }
    for z in zones.values():
        assert z["sent"] == 100 and z["pending"] == 0
        assert 9 <= datetime.fromisoformat(z["last_sent_at"]).hour < 18


def test_an_unknown_zone_in_zones_is_one_line(mailer_env: object) -> None:
    result = runner.invoke(app, ["simulate", "--recipients", "5", "--zones", "Mars/Olympus=1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --zones: 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Moscow)"
    )


def test_a_scheduled_zoned_campaign_is_forecast_from_its_start_and_zone_mix(
    mailer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``simulate --campaign`` of a campaign scheduled for a Monday 03:00 Moscow with
    recipients in Vladivostok and Kaliningrad: starts at its scheduled time and takes its
    zones from the database."""
    monkeypatch.setenv("MAILER_RECIPIENT_TIMEZONES", "on")
    settings_module.get_settings.cache_clear()
    url = mailer_env["MAILER_DATABASE_URL"]
    campaign = seed_data.add_campaign(url, seed_data.add_user(url), 20)
    seed_data.set_quota(url, 1000)
    now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Moscow"))
    day = now.date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    start = datetime.combine(day, time(3), tzinfo=ZoneInfo("Europe/Moscow"))
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "UPDATE mailer_campaignrecipient SET timezone = CASE WHEN id % 2 = 0 "
                "THEN 'Asia/Vladivostok' ELSE 'Europe/Kaliningrad' END WHERE campaign_id = :c"
            ),
            {"c": campaign},
        )
        conn.execute(
            text(
                "INSERT INTO mailer_campaignqueue (campaign_id, status, deferred_until) "
                "VALUES (:c, 'pending', :t)"
            ),
            {"c": campaign, "t": start},
        )
    forecast = simulate("--campaign", campaign)
    assert datetime.fromisoformat(forecast["started_at"]) == start
    zones = {z["zone"]: z for z in forecast["zones"]}
    assert sorted(zones) == ["Asia/Vladivostok", "Europe/Kaliningrad"]
    assert zones["Asia/Vladivostok"]["first_sent_at"][11:16] == "10:00"
    assert zones["Europe/Kaliningrad"]["first_sent_at"][11:16] == "09:00"
