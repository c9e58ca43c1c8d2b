"""Deliverability in the send path: hard bounces go on the suppression list, other 5xx do
not; a suppressed address is never sent to, even if it was suppressed after its campaign
was created (time-skipping server, real PostgreSQL, Redis and SMTP)."""

from __future__ import annotations

import uuid
from datetime import datetime
from email import message_from_bytes, policy

from temporalio.testing import WorkflowEnvironment

from db.engine import session_scope
from db.queries import campaign_status_view
from mailer.mail.unsubscribe_tokens import Target, TargetKind, verify
from mailer.stack import seed_data
from mailer.stack.smtp_sink import FailureRule
from tests.support.harness import Harness, finished, recipient_rows, skip_to_monday_9


def delivered_to(harness: Harness) -> list[str]:
    return [address for message in harness.sink.handler.messages for address in message.recipients]


async def test_hard_bounces_are_suppressed_and_never_written_to_again(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [
        FailureRule("gone@example.com", 550),  # "5.1.1 Mailbox does not exist"
        FailureRule("unknown@example.com", 550, text="Requested action not taken: User unknown"),
        FailureRule("spam@example.com", 554),  # "5.7.1 Message rejected": policy, not the box
        FailureRule("full@example.com", 552),  # "5.3.4 Message too big"
    ]
    bouncing = ["gone@example.com", "unknown@example.com", "spam@example.com", "full@example.com"]
    first = seed_data.add_campaign(harness.database_url, user, [*bouncing, "ok@example.com"])
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(first))
        assert (result.sent, result.failed) == (1, 4)
        assert harness.sql(
            "SELECT address, reason, campaign_id::text FROM mailer_suppression ORDER BY address"
        ) == [
            ("gone@example.com", "hard_bounce", first),
            ("unknown@example.com", "hard_bounce", first),
        ]
        with session_scope(harness.database_url) as session:
            view = campaign_status_view(session, uuid.UUID(first))
            assert view is not None and (view.hard_bounces, view.suppressed) == (2, 0)

        # The next campaign to the same people: the bounced ones are not even tried.
        harness.sink.handler.rules = []
        harness.sink.handler.messages.clear()
        second = seed_data.add_campaign(
            harness.database_url, user, ["Gone@Example.com", "spam@example.com", "new@example.com"]
        )
        result = await finished(await harness.start(second))
    assert (result.sent, result.failed) == (2, 1)
    assert sorted(delivered_to(harness)) == ["new@example.com", "spam@example.com"]
    status, _attempts, error = recipient_rows(harness, second)["Gone@Example.com"]
    assert (status, error) == ("failed", "suppressed: hard_bounce")
    assert harness.sql(
        "SELECT count(*) FROM mailer_sendlog WHERE campaign_id = :c AND email = 'Gone@Example.com'",
        c=second,
    ) == [(0,)]  # never handed to SMTP
    with session_scope(harness.database_url) as session:
        view = campaign_status_view(session, uuid.UUID(second))
        assert view is not None and (view.suppressed, view.failed, view.hard_bounces) == (1, 1, 0)


async def test_an_address_suppressed_after_create_is_not_sent(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    emails = [f"r{i}@example.com" for i in range(6)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    harness.sql_exec(
        "INSERT INTO mailer_suppression (address, reason) VALUES ('r3@example.com', 'unsubscribed')"
    )
    await skip_to_monday_9(time_env)
    async with harness.worker(send_batch_size=2):
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed, result.pending) == ("sent", 5, 1, 0)
    assert "r3@example.com" not in delivered_to(harness)
    assert recipient_rows(harness, campaign)["r3@example.com"][::2] == (
        "failed",
        "suppressed: unsubscribed",
    )
    # The quota was not taken for it: one message each for the five sent.
    assert harness.sql("SELECT emails_available FROM mailer_smtpbzquota") == [(1_000_000 - 5,)]


async def test_every_message_carries_one_click_unsubscribe(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    campaign = seed_data.add_campaign(
        harness.database_url, user, ["a@example.com", "b@example.com"]
    )
    harness.sql_exec(
        "UPDATE mailer_campaign SET text_body = 'Hi {{ name }}. Unsubscribe: {{ unsubscribe_url }}' "
        "WHERE id = :c",
        c=campaign,
    )
    ids = {
        str(row[0]): int(str(row[1]))
        for row in harness.sql(
            "SELECT email, id FROM mailer_campaignrecipient WHERE campaign_id = :c", c=campaign
        )
    }
    await skip_to_monday_9(time_env)
    secret = "s3cret"
    async with harness.worker(
        unsubscribe_secret=secret,
        unsubscribe_base_url="https://mail.example.ru",
        unsubscribe_mailto="unsubscribe@example.ru",
    ):
        await finished(await harness.start(campaign))
    assert len(harness.sink.handler.messages) == 2
    for stored in harness.sink.handler.messages:
        message = message_from_bytes(stored.data, policy=policy.default)
        [address] = stored.recipients
        header = str(message["List-Unsubscribe"])
        url, mailto = (part.strip(" <>") for part in header.split(","))
        token = url.removeprefix("https://mail.example.ru/u/")
        assert verify(secret, token) == Target(
            TargetKind.RECIPIENT, uuid.UUID(campaign), ids[address]
        )
        assert mailto == f"mailto:unsubscribe@example.ru?subject=unsubscribe-{token}"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert address not in header  # no address in clear
        body = message.get_body(("plain",))
        assert body is not None and body.get_content().endswith(f"Unsubscribe: {url}")


async def test_per_domain_pacing_sends_other_domains_and_defers_only_when_all_are_paced(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    paced = [f"m{i}@mail.ru" for i in range(5)] + [f"b{i}@BK.ru" for i in range(3)]
    others = [f"g{i}@gmail.com" for i in range(4)]
    campaign = seed_data.add_campaign(harness.database_url, user, paced + others)
    await skip_to_monday_9(time_env)
    async with harness.worker(domain_rate_per_minute="mail.ru,bk.ru=3", send_batch_size=10):
        result = await finished(await harness.start(campaign))
    assert (result.sent, result.failed, result.pending) == (12, 0, 0)
    rows = harness.sql(
        "SELECT email, created_at FROM mailer_sendlog WHERE campaign_id = :c ORDER BY id",
        c=campaign,
    )
    minutes: dict[datetime, list[str]] = {}
    for email, created_at in rows:
        assert isinstance(created_at, datetime)
        minute = created_at.replace(second=0, microsecond=0)
        minutes.setdefault(minute, []).append(str(email).split("@")[1].lower())
    by_minute = [sorted(domains) for _, domains in sorted(minutes.items())]
    # The first minute: every gmail.com recipient and 3 of the mail.ru group; then 3, then 2.
    assert [d.count("gmail.com") for d in by_minute] == [4, 0, 0]
    assert [len(d) - d.count("gmail.com") for d in by_minute] == [3, 3, 2]
    # Each wait was a deferral to the end of the minute, not of the hour.
    first, *_, last = sorted(minutes)
    assert (last - first).total_seconds() == 120
