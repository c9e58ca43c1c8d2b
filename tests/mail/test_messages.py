"""Messages built for one recipient: rendered, RFC 5322 headers, a stable Message-ID."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest

from mailer.mail.messages import UnsendableMessage, build_message, message_id_for
from mailer.mail.views import CampaignView, RecipientView


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


@pytest.mark.parametrize(
    ("subject", "from_name"),
    [
        ("x" * 2000, "Shop"),  # one ASCII word longer than a line may be
        ("Скидки " * 300, "Магазин «Ромашка» " * 40),  # long non-ASCII subject and name
        ("Big sale, " * 150, 'Shop "Daisy", (the best)'),  # long ASCII; a name with specials
    ],
)
def test_headers_are_folded_under_998_octets_and_parse_back(subject: str, from_name: str) -> None:
    built = build_message(_campaign(subject=subject, from_name=from_name), RECIPIENT, NOW)
    head = built.data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    message = message_from_bytes(built.data, policy=policy.default)
    assert message.defects == []
    assert message["Subject"] == subject
    # RFC 2047 decoding of the raw header (the email package's address parser puts a space
    # between adjacent encoded-words, which RFC 2047 §6.2 says to ignore).
    raw_from = str(message_from_bytes(built.data)["From"])  # compat32: the raw text
    decoded = str(make_header(decode_header(raw_from)))
    assert decoded.endswith(" <news@example.com>")
    name = decoded.removesuffix(" <news@example.com>").strip('"').replace('\\"', '"')
    assert name.strip() == from_name.strip()


def test_idn_addresses_are_written_as_a_labels_or_utf8_over_smtputf8() -> None:
    variables = {"name": "Иван", "company": "Ромашка"}
    recipient = RecipientView(id=1, email="ivan@пример.рф", name="Иван", variables=variables)
    ascii_only = build_message(_campaign(from_email="shop@магазин.рф"), recipient, NOW)
    assert ascii_only.recipient == "ivan@xn--e1afmkfd.xn--p1ai"
    assert ascii_only.sender == "shop@xn--80aairftm.xn--p1ai"
    assert not ascii_only.needs_smtputf8
    assert b"<ivan@xn--e1afmkfd.xn--p1ai>" in ascii_only.data

    utf8 = RecipientView(id=2, email="почта@пример.рф", name="", variables=variables)
    with pytest.raises(UnsendableMessage, match="SMTPUTF8"):
        build_message(_campaign(), utf8, NOW)
    built = build_message(_campaign(), utf8, NOW, server_smtputf8=True)
    assert built.needs_smtputf8 and built.recipient == "почта@xn--e1afmkfd.xn--p1ai"
    assert "\r\nTo: почта@xn--e1afmkfd.xn--p1ai\r\n".encode() in built.data
