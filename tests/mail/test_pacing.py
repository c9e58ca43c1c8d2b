"""MAILER_DOMAIN_RATE_PER_MINUTE: groups, the address's group, errors (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailer.mail.pacing import minute_bounds, minute_label, parse_domain_rates


def test_groups_share_one_rate_and_single_domains_stand_alone() -> None:
    pacing = parse_domain_rates("mail.ru,bk.ru,inbox.ru,list.ru=20, yandex.ru=20,Gmail.com=60")
    assert [(g.name, sorted(g.domains), g.per_minute) for g in pacing.groups] == [
        ("mail.ru", ["bk.ru", "inbox.ru", "list.ru", "mail.ru"], 20),
        ("yandex.ru", ["yandex.ru"], 20),
        ("gmail.com", ["gmail.com"], 60),
    ]
    group = pacing.group_of("Ivan@BK.ru")
    assert group is not None and group.name == "mail.ru"
    assert pacing.group_of("a@example.com") is None
    assert pacing.domains_of({"yandex.ru", "gmail.com"}) == ["gmail.com", "yandex.ru"]
    assert not parse_domain_rates("") and bool(pacing)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mail.ru=x", "'x' is not a whole number"),
        ("mail.ru=0", "at least 1 per minute"),
        ("mail.ru,bk.ru", "mail.ru, bk.ru: no rate"),
        ("mail.ru=20,mail.ru=30", "mail.ru is in two groups"),
        ("a@mail.ru=20", "is not a domain"),
        ("=20", "is not a domain"),
    ],
)
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_domain_rates(text)


def test_minute_windows_are_utc_minutes() -> None:
    now = datetime(2026, 11, 30, 9, 14, 59, 999, tzinfo=UTC)
    start, end = minute_bounds(now)
    assert (start.minute, end.minute, start.second) == (14, 15, 0)
    assert minute_label(now) == "2026-11-30T09:14"
