"""``mailer test-email``: a worker sends it through the campaign's account, it counts only
against its own throttle, and every refusal is one line."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime
from email.header import decode_header, make_header

from activities.ledger import sends_this_hour, sent_today
from db.engine import session_scope
from db.models import Campaign
from mailer.mail.unsubscribe_tokens import Target, TargetKind, verify
from mailer.stack.smtp_sink import FailureRule
from tests.support.harness import Harness, cli


def _subject(data: bytes) -> str:
    return str(make_header(decode_header(email.message_from_bytes(data)["Subject"])))


async def test_sent_through_the_account_counted_only_by_its_throttle(dev: Harness) -> None:
    campaign = dev.ready_campaign(3)
    async with dev.worker(throttle_test_email_per_hour=2):
        first = await cli(dev, "test-email", campaign, "--to", "Operator@Example.org")
        assert first.returncode == 0, first.stderr
        assert "test email sent to Operator@example.org" in first.stdout
        assert f"workflow test-email-{campaign}-" in first.stdout
        assert "1 of 2 this hour" in first.stdout

        [message] = dev.sink.handler.messages
        assert message.recipients == ["Operator@example.org"]
        parsed = email.message_from_bytes(message.data)
        assert _subject(message.data) == "[TEST] Hello N0"  # the first recipient's variables
        body = parsed.get_payload()[0].get_payload(decode=True).decode()  # type: ignore[index,union-attr]
        assert body.startswith("Hi N0, this is r00000.")
        assert parsed["Message-ID"].startswith(f"<{uuid.UUID(campaign).hex}.test-")

        second = await cli(dev, "test-email", campaign, "--to", "op2@example.org")
        assert second.returncode == 0, second.stderr
        third = await cli(dev, "test-email", campaign, "--to", "op3@example.org")
        assert third.returncode == 1
        assert third.stdout == ""
        [line] = third.stderr.strip().splitlines()
        assert (
            "test email refused: user " in line and "already sent 2 test emails this hour" in line
        )
        assert "(MAILER_THROTTLE_TEST_EMAIL_PER_HOUR=2); the next is allowed at " in line
        assert line.endswith(":00")  # the next clock hour
        assert len(dev.sink.handler.messages) == 2

    logged = dev.sql("SELECT provider, recipient_id, status, email FROM mailer_sendlog ORDER BY id")
    assert logged == [
        ("smtp_test", None, "sent", "Operator@example.org"),
        ("smtp_test", None, "sent", "op2@example.org"),
    ]
    requests = dev.sql("SELECT status FROM mailer_testemail ORDER BY id")
    assert requests == [("sent",), ("sent",), ("refused",)]
    # Nothing counts toward the campaign, the creator's day or the hourly window.
    assert dev.sql("SELECT status, count(*) FROM mailer_campaignrecipient GROUP BY 1") == [
        ("pending", 3)
    ]
    now = datetime.now(UTC)
    with session_scope(dev.database_url) as session:
        row = session.get(Campaign, uuid.UUID(campaign))
        assert row is not None and row.status == "ready"
        assert sent_today(session, row, now, "Europe/Moscow") == 0
        assert sends_this_hour(session, now, "Europe/Moscow") == 0


async def test_bad_address_is_one_line_and_writes_nothing(dev: Harness) -> None:
    campaign = dev.ready_campaign(1)
    result = await cli(dev, "test-email", campaign, "--to", "not-an-address")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --to: 'not-an-address' is not a valid address")
    missing = await cli(dev, "test-email", str(uuid.uuid4()), "--to", "a@example.org")
    assert missing.returncode == 2 and "CAMPAIGN_ID: no campaign" in missing.stderr
    nobody = await cli(dev, "test-email", campaign, "--to", "a@example.org", "--as", "nobody")
    assert nobody.returncode == 2
    assert nobody.stderr.strip() == "error: --as: no user 'nobody' (see `mailer user add`)"
    assert dev.sql("SELECT count(*) FROM mailer_testemail") == [(0,)]


async def test_smtp_refusal_reported_with_its_class_and_no_address(dev: Harness) -> None:
    campaign = dev.ready_campaign(1)
    dev.sink.handler.rules = [FailureRule("nobody@example.org", 550)]
    async with dev.worker():
        result = await cli(dev, "test-email", campaign, "--to", "nobody@example.org")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: test email not delivered (recipient): rcpt: 550")
    assert "nobody@example.org" not in line
    assert dev.sql("SELECT provider, status, smtp_code FROM mailer_sendlog") == [
        ("smtp_test", "failed", 550)
    ]


async def test_a_test_email_carries_its_own_unsubscribe_link(dev: Harness) -> None:
    campaign = dev.ready_campaign(1)
    async with dev.worker(unsubscribe_secret="s3cret", unsubscribe_base_url="https://u.example"):
        result = await cli(dev, "test-email", campaign, "--to", "me@example.org")
    assert result.returncode == 0, result.stderr
    [message] = dev.sink.handler.messages
    parsed = email.message_from_bytes(message.data)
    token = parsed["List-Unsubscribe"].strip("<>").removeprefix("https://u.example/u/")
    [request_id] = dev.sql("SELECT id FROM mailer_testemail")[0]
    assert verify("s3cret", token) == Target(
        TargetKind.TEST_EMAIL, uuid.UUID(campaign), int(str(request_id))
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
