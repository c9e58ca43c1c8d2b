"""`mailer web` faces the internet: what strangers send it over HTTP and SMTP must never
crash, stall or mislead it (a real `mailer web` process on loopback)."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from mailer.mail.unsubscribe_tokens import Target, TargetKind, sign
from mailer.stack.seed_data import sql_rows
from tests.support import inbound_samples as samples
from tests.support.webservice import SECRET, WebService, running_web

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
MAILBOX = "bounces@news.example.com"


@pytest.fixture
def guarded(database_url: str, tmp_path: Path) -> Iterator[WebService]:
    """`mailer web` whose receiver serves news.example.com (its return path's domain)."""
    with running_web(
        database_url, tmp_path / "web.log", {"MAILER_RETURN_PATH": MAILBOX}
    ) as service:
        yield service


def token(campaign_id: str, recipient_id: int) -> str:
    return sign(SECRET, Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), recipient_id))


def suppressed(web: WebService) -> list[tuple[object, ...]]:
    return sql_rows(web.database_url, "SELECT address, reason FROM mailer_suppression")


def same_bytes_other_text(good: str) -> str:
    """The token with its last character's unused low bits flipped: a lax decoder reads
    the same bytes from it."""
    alphabet = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_").decode()
    last = alphabet[alphabet.index(good[-1]) ^ 1]
    variant = good[:-1] + last
    pad = "=" * (-len(good) % 4)
    assert base64.urlsafe_b64decode(variant + pad) == base64.urlsafe_b64decode(good + pad)
    return variant


def test_only_the_canonical_token_is_accepted(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    good = token(campaign_id, ids[0])
    for variant in (good + "=", good + ".~!*", same_bytes_other_text(good), good + "%20"):
        response = httpx.post(f"{web.base_url}/u/{variant}", data=ONE_CLICK)
        assert response.status_code in (400, 404), variant
    assert suppressed(web) == []


def test_no_redirect_to_a_forged_host_and_only_the_public_host_is_served(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    url = f"{web.base_url}/u/{token(campaign_id, ids[0])}/"
    slash = httpx.get(url, headers={"Host": "127.0.0.1"})
    assert slash.status_code == 404 and "location" not in slash.headers
    forged = httpx.get(url.rstrip("/"), headers={"Host": "evil.example"})
    assert forged.status_code == 400
    assert "evil.example" not in forged.text and "location" not in forged.headers


def test_one_click_needs_its_body_and_pages_carry_security_headers(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    url = f"{web.base_url}/u/{token(campaign_id, ids[0])}"
    assert httpx.post(url, data={"anything": "1"}).status_code == 400
    assert httpx.post(url, content=b"x" * 5000).status_code == 400
    assert suppressed(web) == []
    page = httpx.get(url)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "server" not in page.headers
    not_allowed = httpx.put(url)
    assert not_allowed.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in not_allowed.headers["allow"].split(",")}
    assert httpx.post(url, data=ONE_CLICK).status_code == 200
    assert len(suppressed(web)) == 1


def test_a_silent_client_is_cut_off_while_others_are_served(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    port = int(web.base_url.rsplit(":", 1)[1])
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for connection in silent:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    try:
        assert httpx.get(f"{web.base_url}/healthz", timeout=5).text == "ok"
        started = time.monotonic()
        for connection in silent:
            connection.settimeout(30)
            assert connection.recv(1024) == b""  # closed by the server, unanswered
        assert time.monotonic() - started < 30  # the header deadline is 10 s
    finally:
        for connection in silent:
            connection.close()


async def deliver(web: WebService, raw: bytes, recipients: list[str]) -> str:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=web.inbound_port, timeout=30) as smtp:
        _, reply = await smtp.sendmail("", recipients, raw)
    return reply


async def test_the_receiver_is_no_relay(guarded: WebService) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=guarded.inbound_port) as smtp:
        await smtp.mail("")
        for address in ("victim@gmail.com", "a%gmail.com@news.example.com"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await smtp.rcpt(address)
            assert refused.value.code == 550
        assert (await smtp.rcpt(MAILBOX)).code == 250
        for _ in range(99):
            await smtp.rcpt(MAILBOX)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as too_many:
            await smtp.rcpt(MAILBOX)
        assert too_many.value.code == 452


async def test_a_report_of_40000_list_unsubscribe_headers_is_refused_quickly(
    guarded: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    header = f"<{guarded.base_url}/u/{token(campaign_id, ids[0])}>"
    raw = samples.bounce("anna.k@example.com", header)
    extra = b"".join(f"List-Unsubscribe: <http://x/u/{i}>\n".encode() for i in range(40_000))
    raw = raw.replace(b"List-Unsubscribe-Post:", extra + b"List-Unsubscribe-Post:", 1)
    assert len(raw) < 2 * 1024 * 1024
    started = time.monotonic()
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await deliver(guarded, raw, [MAILBOX])
    elapsed = time.monotonic() - started
    assert (
        refused.value.code == 554
        and "40001 List-Unsubscribe headers, at most 50" in refused.value.message
    )
    assert elapsed < 5  # 40,000 headers took 6.7 s of CPU with the quadratic de-duplication
    # A real report (two links) is still read and acted on.
    assert await deliver(guarded, samples.bounce("anna.k@example.com", header), [MAILBOX])


async def test_unreadable_mail_is_refused_for_good_not_deferred_forever(
    guarded: WebService,
) -> None:
    nested = b"MIME-Version: 1.0\n"
    for depth in range(1000):
        nested += f'Content-Type: multipart/mixed; boundary="b{depth}"\n\n--b{depth}\n'.encode()
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await deliver(guarded, nested, [MAILBOX])
    assert refused.value.code == 554
    big = b"Subject: x\n\n" + b"x" * (3 * 1024 * 1024)
    with pytest.raises((aiosmtplib.SMTPDataError, aiosmtplib.SMTPResponseException)) as large:
        await deliver(guarded, big, [MAILBOX])
    assert large.value.code == 552
