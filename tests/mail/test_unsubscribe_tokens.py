"""Unsubscribe tokens: round trip, no address inside, forged or altered ones refused."""

from __future__ import annotations

import base64
import uuid

import pytest

from mailer.mail.unsubscribe_tokens import BadToken, Target, TargetKind, links, sign, verify

SECRET = "s3cret"
TARGET = Target(TargetKind.RECIPIENT, uuid.UUID("12345678-1234-5678-1234-567812345678"), 42)


def test_round_trip_and_url_safe() -> None:
    token = sign(SECRET, TARGET)
    assert verify(SECRET, token) == TARGET
    assert token.isascii() and "/" not in token and "+" not in token and "=" not in token
    test = Target(TargetKind.TEST_EMAIL, TARGET.campaign_id, 7)
    assert verify(SECRET, sign(SECRET, test)) == test


def test_another_secret_or_any_changed_character_is_refused() -> None:
    token = sign(SECRET, TARGET)
    with pytest.raises(BadToken):
        verify("other", token)
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(BadToken):
            verify(SECRET, changed)
    for junk in ("", "x", "%%%", token[:-2], token + "AA"):
        with pytest.raises(BadToken):
            verify(SECRET, junk)
    with pytest.raises(BadToken, match="MAILER_UNSUBSCRIBE_SECRET"):
        verify("", token)


def test_a_forged_id_needs_the_secret() -> None:
    raw = bytearray(base64.urlsafe_b64decode(sign(SECRET, TARGET) + "="))
    raw[24] ^= 1  # another recipient id, same signature
    with pytest.raises(BadToken):
        verify(SECRET, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode())


def test_links_carry_no_address() -> None:
    found = links(SECRET, "https://mail.example.ru/", "unsubscribe@example.ru", TARGET)
    token = sign(SECRET, TARGET)
    assert found.url == f"https://mail.example.ru/u/{token}"
    assert found.mailto == f"mailto:unsubscribe@example.ru?subject=unsubscribe-{token}"
    assert found.header == f"<{found.url}>, <{found.mailto}>"
    assert links(SECRET, "https://x", "", TARGET).header == f"<https://x/u/{token}>"
