"""What operators read: times in MAILER_TIMEZONE everywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from db.queries import CampaignRow
from mailer.cli.campaigns import _campaign_table
from mailer.core.jsonable import jsonable

ROW = CampaignRow(
    campaign_id="c",
    name="n",
    status="sending",
    queue_status="pending",
    defer_reason="outside_hours",
    deferred_until=datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
    pending=1,
    sent=0,
    failed=0,
    scheduled_for=None,
)


def test_list_shows_times_in_the_configured_zone() -> None:
    console = Console(width=300, record=True)
    console.print(_campaign_table([ROW], ZoneInfo("Europe/Moscow")))
    assert "2026-12-07T09:00+03:00" in console.export_text()


def test_json_shows_times_in_the_configured_zone() -> None:
    assert jsonable(ROW, "Europe/Moscow")["deferred_until"] == "2026-12-07T09:00:00+03:00"
    assert jsonable(ROW)["deferred_until"] == "2026-12-07T06:00:00+00:00"
