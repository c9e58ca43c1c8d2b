"""Campaigns through a real Postfix relay (Debian's package, tests/support/postfix.py) instead of our
own sink: STARTTLS with a private CA and SASL AUTH, SMTPUTF8 and IDN addresses relayed on,
Postfix's own 535 for a wrong password, and a bounce that happens after Postfix accepted the
message — returned by Postfix as a real delivery report to mailer's receiver, which puts the
address on the suppression list."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from email import message_from_string, policy

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.smtp_envelope import pipelines
from activities.smtp_session import close_smtp, open_smtp
from db.engine import session_scope
from db.queries import campaign_status_view
from mailer.mail.views import AccountView
from mailer.stack import seed_data
from mailer.stack.smtp_sink import FailureRule, SmtpSink
from tests.activities.test_smtp_envelope import REFUSALS_IN_A_GROUP, counting_proxy, send
from tests.activities.test_smtp_envelope import Counter as WriteCounter
from tests.support.harness import Harness, finished, progress, skip_to_monday_9, state_is, wait_for
from tests.support.postfix import PASSWORD, USERNAME, Greylister, Postfix, running_postfix
from tests.support.webservice import SECRET, WebService

SENDER_DOMAIN = "news.test"  # the From domain: Postfix's reports to it go to the receiver


@pytest.fixture
def internet() -> Iterator[SmtpSink]:
    """Where Postfix relays to: the recipients' servers (SMTPUTF8, like Gmail's)."""
    with SmtpSink(smtputf8=True) as sink:
        yield sink


@pytest.fixture
def postfix(internet: SmtpSink, web: WebService) -> Iterator[Postfix]:
    with running_postfix(
        relay_port=internet.port, sender_domain=SENDER_DOMAIN, inbound_port=web.inbound_port
    ) as server:
        yield server


def sender_through(harness: Harness, postfix: Postfix, *, password: str = PASSWORD) -> int:
    """The account as an operator sets it for a provider's relay: 587-style STARTTLS,
    the provider's CA, SASL login."""
    return harness.add_sender(
        smtp_port=postfix.port,
        smtp_tls="starttls",
        smtp_ca_pem=postfix.ca_pem,
        smtp_username=USERNAME,
        smtp_password=password,
        from_email=f"news@{SENDER_DOMAIN}",
    )


def relayed_to(internet: SmtpSink) -> list[str]:
    return sorted(
        address for message in internet.handler.messages for address in message.recipients
    )


async def test_a_campaign_goes_through_postfix_over_starttls_and_sasl_with_utf8_addresses(
    time_env: WorkflowEnvironment, harness: Harness, postfix: Postfix, internet: SmtpSink
) -> None:
    user = sender_through(harness, postfix)
    recipients = [f"r{i}@example.org" for i in range(8)] + ["иван@пример.рф", "olga@пример.рф"]
    campaign = seed_data.add_campaign(harness.database_url, user, recipients)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 10, 0)

    await wait_for(lambda: len(internet.handler.messages) == 10, what="Postfix to relay all")
    assert relayed_to(internet) == sorted(
        [f"r{i}@example.org" for i in range(8)]
        + ["olga@xn--e1afmkfd.xn--p1ai", "иван@xn--e1afmkfd.xn--p1ai"]
    )
    log = postfix.log_text()
    # Over TLS and logged in: Postfix logs each submission's SASL user, and its Received
    # header on every relayed message names the protocol: ESMTPSA (ESMTP + TLS + AUTH), or
    # UTF8SMTPSA (RFC 6531) for the one whose local part is Cyrillic; an IDN domain alone
    # goes as A-labels and needs no SMTPUTF8.
    assert re.search(rf"sasl_method=(PLAIN|LOGIN), sasl_username={re.escape(USERNAME)}", log)
    assert re.search(r"disconnect from .* ehlo=2 starttls=1 auth=1 ", log)
    protocols = Counter(
        found.group(1).decode()
        for m in internet.handler.messages
        if (found := re.search(rb"\(Postfix\) with (\w+) id", m.data))
    )
    assert protocols == {"ESMTPSA": 9, "UTF8SMTPSA": 1}
    utf8 = next(
        m for m in internet.handler.messages if m.recipients == ["иван@xn--e1afmkfd.xn--p1ai"]
    )
    message = message_from_string(utf8.data.decode("utf-8"), policy=policy.default)
    assert message["To"].addresses[0].username == "иван"


async def test_postfix_refusing_the_password_pauses_the_campaign_and_sends_nothing(
    time_env: WorkflowEnvironment, harness: Harness, postfix: Postfix, internet: SmtpSink
) -> None:
    user = sender_through(harness, postfix, password="not-the-password")
    campaign = seed_data.add_campaign(harness.database_url, user, 5)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "paused"), what="the pause on a refused login")
        reason = (await progress(handle)).pause_reason
    assert "535" in reason and "authentication failed" in reason
    assert harness.sql(
        "SELECT status, count(*) FROM mailer_campaignrecipient WHERE campaign_id = :c "
        "GROUP BY status",
        c=campaign,
    ) == [("pending", 5)]
    assert internet.handler.messages == []


async def test_a_bounce_postfix_reports_after_accepting_suppresses_the_address(
    time_env: WorkflowEnvironment,
    harness: Harness,
    postfix: Postfix,
    internet: SmtpSink,
    web: WebService,
) -> None:
    """Postfix says 250 to mailer, then the recipient's server says 550 5.1.1 to Postfix:
    Postfix's delivery report comes back to the From domain, which is mailer's receiver."""
    internet.handler.rules = [FailureRule("gone@example.org", 550)]
    user = sender_through(harness, postfix)
    campaign = seed_data.add_campaign(
        harness.database_url, user, ["gone@example.org", "ok@example.org"]
    )
    await skip_to_monday_9(time_env)
    async with harness.worker(unsubscribe_secret=SECRET, unsubscribe_base_url=web.base_url):
        result = await finished(await harness.start(campaign))
    assert (result.sent, result.failed) == (2, 0)  # the relay took both

    def suppressed() -> list[tuple[object, ...]]:
        return harness.sql(
            "SELECT address, reason, campaign_id::text, note FROM mailer_suppression"
        )

    await wait_for(lambda: bool(suppressed()), timeout=60, what="Postfix's report to arrive")
    [(address, reason, from_campaign, note)] = suppressed()
    assert (address, reason, from_campaign) == ("gone@example.org", "hard_bounce", campaign)
    assert str(note).startswith("delivery report: 5.1.1 smtp; 550 5.1.1")
    with session_scope(harness.database_url) as session:
        view = campaign_status_view(session, uuid.UUID(campaign))
    assert view is not None and view.hard_bounces == 1
    assert f"relay=127.0.0.1[127.0.0.1]:{web.inbound_port}" in postfix.log_text()
    assert "hard_bounce: delivery report" in web.log.read_text()


async def test_a_postfix_that_greylists_every_new_recipient_gets_each_message_once(
    time_env: WorkflowEnvironment, harness: Harness, internet: SmtpSink
) -> None:
    """Postfix asks a greylisting policy service (as with postgrey) about every recipient:
    the first try of each is a 450 4.7.1. The campaign waits out the retry delay and then
    delivers every message exactly once; the breaker does not mistake it for an outage."""
    greylister = Greylister()
    try:
        with running_postfix(relay_port=internet.port, policy_port=greylister.port) as server:
            user = sender_through(harness, server)
            campaign = seed_data.add_campaign(harness.database_url, user, 12)
            await skip_to_monday_9(time_env)
            async with harness.worker(send_batch_size=5):
                result = await finished(await harness.start(campaign))
            assert (result.status, result.sent, result.failed) == ("sent", 12, 0)
            await wait_for(lambda: len(internet.handler.messages) == 12, what="all relayed")
            log = server.log_text()
    finally:
        greylister.close()
    assert greylister.deferred == 12
    assert log.count("Greylisted, please try again later") == 12  # Postfix's own 450s
    addresses = harness.sql(
        "SELECT email FROM mailer_campaignrecipient WHERE campaign_id = :c", c=campaign
    )
    assert Counter(relayed_to(internet)) == Counter(str(row[0]) for row in addresses)
    assert len(addresses) == 12
    assert harness.sql(
        "SELECT status, count(*) FROM mailer_campaignrecipient WHERE campaign_id = :c "
        "GROUP BY status",
        c=campaign,
    ) == [("sent", 12)]
    assert harness.queue_row(campaign)["consecutive_transient_errors"] == 0


def time_skipping_clock(env: WorkflowEnvironment) -> Callable[[], float]:
    """The time-skipping server's clock, for the greylister's thread: its delay passes when
    the campaign's durable wait does."""
    loop = asyncio.get_running_loop()

    def now() -> float:
        return asyncio.run_coroutine_threadsafe(env.get_current_time(), loop).result(10).timestamp()

    return now


async def test_three_greylisted_recipients_first_in_a_list_wait_alone_and_the_rest_go_at_once(
    time_env: WorkflowEnvironment, harness: Harness, internet: SmtpSink
) -> None:
    """The first three recipients of 300 are greylisted for 60 s (postgrey's way, through
    Postfix's policy delegation): the other 297 are relayed in the first batch, each once;
    the three on their own retry; the campaign never defers."""
    greylister = Greylister(only_first=3, delay_seconds=60, clock=time_skipping_clock(time_env))
    try:
        with running_postfix(relay_port=internet.port, policy_port=greylister.port) as server:
            user = sender_through(harness, server)
            campaign = seed_data.add_campaign(harness.database_url, user, 300)
            await skip_to_monday_9(time_env)
            async with harness.worker(send_batch_size=300, rate_per_hour=1000):
                result = await finished(await harness.start(campaign))
            assert (result.status, result.sent, result.failed) == ("sent", 300, 0)
            await wait_for(lambda: len(internet.handler.messages) == 300, what="all relayed")
    finally:
        greylister.close()
    assert greylister.deferred == 3
    rows = harness.sql(
        "SELECT email, sent_at, attempts FROM mailer_campaignrecipient WHERE campaign_id = :c",
        c=campaign,
    )
    first_batch = min(row[1] for row in rows)  # type: ignore[type-var]
    late = {str(row[0]) for row in rows if row[1] != first_batch}
    assert late == set(greylister.greylisted)
    assert {row[2] for row in rows if str(row[0]) in late} == {1}
    assert Counter(relayed_to(internet)) == Counter(str(row[0]) for row in rows)
    queue = harness.queue_row(campaign)
    assert (queue["consecutive_transient_errors"], queue["last_error"]) == (0, "")


async def test_a_provider_rate_limiting_every_recipient_defers_the_campaign_and_counts(
    time_env: WorkflowEnvironment, harness: Harness, internet: SmtpSink
) -> None:
    """Postfix's policy answers every recipient ``451 4.7.1 Rate limit exceeded`` (Postfix
    words it ``Recipient address rejected: Rate limit exceeded``): a throttle, whoever is
    named in it. The batch stops at the first refusal, the campaign defers, the breaker
    counts; no recipient spends an attempt."""
    limiter = Greylister(action="451 4.7.1 Rate limit exceeded", refuse_all=True)
    try:
        with running_postfix(relay_port=internet.port, policy_port=limiter.port) as server:
            user = sender_through(harness, server)
            campaign = seed_data.add_campaign(harness.database_url, user, 20)
            await skip_to_monday_9(time_env)
            async with harness.worker():
                handle = await harness.start(campaign)
                await wait_for(
                    lambda: harness.queue_row(campaign).get("defer_reason") == "transient_error",
                    what="the transient deferral",
                )
                queue = harness.queue_row(campaign)
                log = server.log_text()
                waiting = harness.sql(
                    "SELECT max(attempts), count(*) FROM mailer_campaignrecipient "
                    "WHERE campaign_id = :c AND status = 'pending'",
                    c=campaign,
                )
                relayed_meanwhile = len(internet.handler.messages)
                refusals = limiter.deferred
                limiter.action = "DUNNO"  # the provider's hour is over
                result = await finished(handle)
    finally:
        limiter.close()
    assert queue["consecutive_transient_errors"] == 1
    assert "Rate limit exceeded" in str(queue["last_error"])
    assert "Recipient address rejected: Rate limit exceeded" in log
    assert waiting == [(0, 20)]  # no recipient spent an attempt on the throttle
    assert relayed_meanwhile == 0
    assert refusals == 1  # the batch stopped at the first refusal
    assert (result.status, result.sent) == ("sent", 20)


async def test_a_postfix_without_smtputf8_fails_only_the_utf8_mailbox(
    time_env: WorkflowEnvironment, harness: Harness, internet: SmtpSink
) -> None:
    """Postfix with `smtputf8_enable = no` does not offer SMTPUTF8: the Cyrillic mailbox is
    failed with a reason saying so, the IDN domain still goes (as A-labels), so do the rest."""
    with running_postfix(relay_port=internet.port, smtputf8=False) as server:
        user = sender_through(harness, server)
        addresses = ["иван@пример.рф", "olga@пример.рф", "plain@example.org"]
        campaign = seed_data.add_campaign(harness.database_url, user, addresses)
        await skip_to_monday_9(time_env)
        async with harness.worker():
            result = await finished(await harness.start(campaign))
        await wait_for(lambda: len(internet.handler.messages) == 2, what="Postfix to relay")
    assert (result.status, result.sent, result.failed) == ("sent", 2, 1)
    assert relayed_to(internet) == ["olga@xn--e1afmkfd.xn--p1ai", "plain@example.org"]
    [(error,)] = harness.sql(
        "SELECT error FROM mailer_campaignrecipient WHERE campaign_id = :c AND status = 'failed'",
        c=campaign,
    )
    assert "SMTPUTF8" in str(error)


async def test_with_a_return_path_reports_go_to_it_and_the_from_mailbox_gets_none(
    time_env: WorkflowEnvironment, harness: Harness, internet: SmtpSink, web: WebService
) -> None:
    """MAILER_RETURN_PATH is the envelope sender: Postfix returns its report there (routed to
    the receiver), not to the From address, which nobody has to forward anything from."""
    internet.handler.rules = [FailureRule("gone@example.org", 550)]
    with running_postfix(
        relay_port=internet.port, sender_domain="returns.test", inbound_port=web.inbound_port
    ) as server:
        user = sender_through(harness, server)  # From: news@news.test, not routed here
        campaign = seed_data.add_campaign(harness.database_url, user, ["gone@example.org"])
        await skip_to_monday_9(time_env)
        async with harness.worker(
            unsubscribe_secret=SECRET,
            unsubscribe_base_url=web.base_url,
            return_path="bounces@returns.test",
        ):
            result = await finished(await harness.start(campaign))
        assert result.sent == 1

        def suppressed() -> list[tuple[object, ...]]:
            return harness.sql("SELECT address, reason FROM mailer_suppression")

        await wait_for(lambda: bool(suppressed()), timeout=60, what="the report to arrive")
        log = server.log_text()
    assert suppressed() == [("gone@example.org", "hard_bounce")]
    assert "from=<bounces@returns.test>" in log
    assert internet.handler.messages == []  # no report went to the From mailbox


async def test_postfix_gets_each_message_pipelined_and_refusals_in_a_group_stay_apart(
    internet: SmtpSink,
) -> None:
    """Postfix advertises PIPELINING: MAIL, RCPT and DATA go in one flight (two client
    writes a message, counted between mailer and Postfix, over STARTTLS and SASL); a 550
    and a 451 to RCPT and a 554 to DATA in the middle of a group are each that message's own
    refusal, and the session goes on after its RSET."""
    with running_postfix(
        relay_port=internet.port,
        recipient_access={
            "gone@example.org": "550 5.1.1 no such user",
            "full@example.org": "451 4.2.2 mailbox full, try again later",
        },
        data_access={"spam@example.org": "554 5.7.1 message refused at DATA"},
    ) as server:
        counter = WriteCounter()
        async with counting_proxy(server.port, counter) as port:
            relay = AccountView(
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_username=USERNAME,
                smtp_password=PASSWORD,
                smtp_tls="starttls",
                from_email=f"news@{SENDER_DOMAIN}",
                from_name="",
                per_user_daily_limit=0,
                smtp_ca_pem=server.ca_pem,
            )
            smtp = await open_smtp(relay, timeout=20)
            try:
                assert pipelines(smtp)
                before = counter.client_writes
                outcomes = [await send(smtp, address) for address, _ in REFUSALS_IN_A_GROUP]
                first_writes = counter.client_writes - before
                before = counter.client_writes
                for number in range(5):
                    assert await send(smtp, f"more{number}@example.org") == "ok"
                per_message = (counter.client_writes - before) / 5
            finally:
                await close_smtp(smtp)
        await wait_for(lambda: len(internet.handler.recipients()) == 8, what="8 relayed")
    assert outcomes == [outcome for _, outcome in REFUSALS_IN_A_GROUP]
    assert per_message == 2
    assert first_writes < 6 * 4  # refusals add an RSET each, never a command at a time
    assert "gone@example.org" not in relayed_to(internet)
