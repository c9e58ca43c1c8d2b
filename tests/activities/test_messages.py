"""Messages built for one recipient: rendered, RFC 5322 headers, a stable Message-ID."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from activities.ledger import CampaignView, RecipientView
from activities.messages import UnsendableMessage, build_message, message_id_for


def _campaign(**changes: str) -> CampaignView:
    values = {
        "subject": "{{ name }}, привет",
        "html_body": "<p>{{ company }}</p>",
        "text_body": "Hi {{ name }}",
        "from_email": "news@example.com",
        "from_name": "Магазин «Ромашка»",
    }
    values.update(changes)
    return CampaignView(id=uuid.UUID(int=7), created_by_id=1, **values)


RECIPIENT = RecipientView(
    id=42,
    email="anna@example.com",
    name="Анна",
    variables={"name": "Анна", "company": "Рога & <Копыта>"},
)
NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)


def test_message_parses_back_rendered_and_its_id_is_stable() -> None:
    built = build_message(_campaign(), RECIPIENT, NOW)
    message = message_from_bytes(built.data, policy=policy.default)
    assert message.defects == []
    assert message["Subject"] == "Анна, привет"
    assert message["From"] == "Магазин «Ромашка» <news@example.com>"
    assert message["To"] == "Анна <anna@example.com>"
    assert (
        message["Message-ID"]
        == built.message_id
        == message_id_for(uuid.UUID(int=7), 42, "news@example.com")
    )
    assert build_message(_campaign(), RECIPIENT, NOW).data == built.data
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and html.get_content() == "<p>Рога &amp; &lt;Копыта&gt;</p>"
    assert text is not None and text.get_content() == "Hi Анна"


def test_single_part_and_long_subjects() -> None:
    long_subject = "Очень длинная тема " * 10 + "{{ name }}"
    built = build_message(_campaign(subject=long_subject, html_body=""), RECIPIENT, NOW)
    message = message_from_bytes(built.data, policy=policy.default)
    assert message.get_content_type() == "text/plain" and message.defects == []
    assert message["Subject"] == ("Очень длинная тема " * 10) + "Анна"
    assert all(len(line) <= 998 for line in built.data.split(b"\r\n"))


def test_line_break_from_a_variable_is_refused() -> None:
    sneaky = RecipientView(
        id=1,
        email="x@example.com",
        name="X",
        variables={"name": "X\r\nBcc: all@example.com", "company": "C"},
    )
    with pytest.raises(UnsendableMessage, match="Subject header would contain a line break"):
        build_message(_campaign(), sneaky, NOW)
