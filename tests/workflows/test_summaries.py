"""The Web UI's words for a campaign: escaped, one line, no address, times in the zone."""

from __future__ import annotations

from datetime import UTC, datetime

from workflows.summaries import (
    CampaignCard,
    LimitsInForce,
    batch_summary,
    campaign_details,
    campaign_summary,
    plain,
    scheduled_summary,
    sleep_summary,
)

CARD = CampaignCard("44c4b4dd-0000-4000-8000-000000000001", "Декабрьская рассылка", 1200, "olga", 7)


def test_the_summary_names_the_campaign_its_size_and_creator() -> None:
    assert campaign_summary(CARD) == "Декабрьская рассылка · 1,200 recipients · by olga"
    nobody = CampaignCard(CARD.campaign_id, "X", 3, "", None)
    assert campaign_summary(nobody) == "X · 3 recipients"


def test_untrusted_names_are_literal_single_line_and_hold_no_address() -> None:
    assert plain("[/x] **bold** `code`") == r"\[/x\] \*\*bold\*\* \`code\`"
    assert plain("line one\nline two\x1b[2J") == "line one line two \\[2J"
    assert plain("для anna.k@example.com и всех") == r"для a\*\*\*@example\.com и всех"
    assert plain("x" * 500) == "x" * 119 + "…"
    creator_is_an_address = CampaignCard(CARD.campaign_id, "N", 1, "olga@corp.ru", 7)
    assert "olga@" not in campaign_summary(creator_is_an_address)


def test_the_details_state_the_limits_in_force_and_the_status_command() -> None:
    limits = LimitsInForce("Europe/Moscow", 9, 18, 100, 0, 10, 5)
    details = campaign_details(CARD, limits)
    assert "09:00–18:00 Europe/Moscow, at most 100 emails an hour, no daily limit" in details
    assert "pauses after 10 consecutive transient errors; retries after 5 min" in details
    assert f"`mailer status {CARD.campaign_id}`" in details
    with_daily = campaign_details(CARD, LimitsInForce("Europe/Moscow", 9, 18, 100, 500, 10, 5))
    assert "500 a day per user" in with_daily


def test_a_sleep_says_why_and_until_when_in_the_campaigns_zone() -> None:
    now = datetime(2026, 12, 4, 20, 30, tzinfo=UTC)  # Friday 23:30 in Moscow
    tomorrow = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)  # Saturday 09:00 in Moscow
    assert sleep_summary("outside_hours", tomorrow, now, "Europe/Moscow") == (
        "outside_hours until Sat 05 Dec 09:00 MSK"
    )
    later_today = datetime(2026, 12, 4, 20, 45, tzinfo=UTC)
    assert sleep_summary("rate_per_hour", later_today, now, "Europe/Moscow") == (
        "rate_per_hour until 23:45 MSK"
    )
    assert batch_summary(100) == "batch of 100"
    assert scheduled_summary(tomorrow, now, "Europe/Moscow") == (
        "scheduled start at Sat 05 Dec 09:00 MSK"
    )
