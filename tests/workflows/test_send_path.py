"""The send path under what real servers and address books do: greylisting, full mailboxes,
throttles, spam refusals, IDN and UTF-8 addresses, errors nothing classifies
(time-skipping server, real PostgreSQL, Redis and SMTP)."""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
import redis as redis_lib
import trustme
from temporalio.testing import WorkflowEnvironment

from mailer.stack import seed_data
from mailer.stack.smtp_sink import FailureRule, SmtpSink
from tests.support.harness import (
    Harness,
    finished,
    next_monday_9,
    progress,
    recipient_rows,
    skip_to,
    skip_to_monday_9,
    state_is,
    wait_for,
)


async def test_a_greylisted_recipient_waits_alone_and_is_sent_later(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    emails = [f"r{i}@example.com" for i in range(30)]
    emails[0] = "grey@example.com"  # first by id: once it blocked every batch
    harness.sink.handler.rules = [FailureRule("grey@example.com", 451, times=1)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker(send_batch_size=10):
        handle = await harness.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 30, 0)
    rows = harness.sql(
        "SELECT email, sent_at FROM mailer_campaignrecipient WHERE campaign_id = :c", c=campaign
    )
    sent_at: dict[str, datetime] = {str(email): when for email, when in rows}  # type: ignore[misc]
    others_done = max(t for e, t in sent_at.items() if e != "grey@example.com")
    # The others went first; the greylisted one after the retry delay, with its 2nd try.
    assert sent_at["grey@example.com"] > others_done
    assert recipient_rows(harness, campaign)["grey@example.com"][:2] == ("sent", 1)
    assert harness.queue_row(campaign)["consecutive_transient_errors"] == 0


async def test_a_full_mailbox_fails_after_its_attempts_and_the_campaign_ends(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("full@example.com", 452)]
    emails = ["full@example.com"] + [f"ok{i}@example.com" for i in range(5)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker(recipient_max_attempts=3):
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 5, 1)
    status, attempts, error = recipient_rows(harness, campaign)["full@example.com"]
    assert (status, attempts) == ("failed", 3) and "452" in str(error)
    assert harness.sql("SELECT smtp_code FROM mailer_sendlog WHERE status = 'failed'") == [(452,)]


@pytest.mark.parametrize(
    ("code", "text"),
    [(451, "4.7.1 Rate limit exceeded, slow down"), (421, "4.7.0 Too many connections")],
)
async def test_a_throttle_that_says_so_defers_the_campaign_at_its_first_reply(
    time_env: WorkflowEnvironment, harness: Harness, code: int, text: str
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("all", code, text=text)]
    campaign = seed_data.add_campaign(harness.database_url, user, 10)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(
            lambda: harness.queue_row(campaign).get("defer_reason") == "transient_error",
            what="the transient deferral",
        )
        row = harness.queue_row(campaign)
        assert row["consecutive_transient_errors"] == 1
        assert text in str(row["last_error"])
        # One message found the throttle; not the recipients' fault: none used an attempt.
        assert len(harness.sink.handler.refused) == 1
        assert harness.sql("SELECT max(attempts) FROM mailer_campaignrecipient") == [(0,)]
        harness.sink.handler.rules = []
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 10)


async def test_a_run_of_replies_that_do_not_say_why_is_probed_then_read_as_a_throttle(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("all", 451, text="Try again later")]
    campaign = seed_data.add_campaign(harness.database_url, user, 10)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(
            lambda: harness.queue_row(campaign).get("defer_reason") == "transient_error",
            what="the transient deferral",
        )
        row = harness.queue_row(campaign)
        assert row["consecutive_transient_errors"] == 1
        assert "5 different recipients refused in a row (probes included)" in str(row["last_error"])
        # Three in a row, then two probes: five messages is what such a throttle costs.
        assert len({address for address, _ in harness.sink.handler.refused}) == 5
        assert harness.sql("SELECT max(attempts) FROM mailer_campaignrecipient") == [(0,)]
        harness.sink.handler.rules = []
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 10)


async def test_a_run_of_5xx_at_data_pauses_instead_of_failing_the_list(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("all", 554, stage="data")]
    campaign = seed_data.add_campaign(harness.database_url, user, 30)
    await skip_to_monday_9(time_env)
    async with harness.worker(circuit_breaker_threshold=5):
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "paused"), what="the pause")
        state = await progress(handle)
        assert state.pause_reason.startswith("refused by the server: data: 554")
        assert "5 different recipients refused in a row" in state.pause_reason
        # Those recipients go back to (stay) pending: nothing was failed for good.
        assert state.failed == 0 and state.pending == 30
        harness.sink.handler.rules = []
        await handle.signal("resume")
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 30, 0)


async def test_some_5xx_at_data_fail_only_those_recipients(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("spam*@example.com", 554, stage="data")]
    emails = [f"spam{i}@example.com" if i % 4 == 0 else f"ok{i}@example.com" for i in range(20)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker(circuit_breaker_threshold=3):
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 15, 5)


@pytest.fixture
def utf8_sink(harness: Harness) -> Iterator[SmtpSink]:
    """The harness's sink replaced by one that offers SMTPUTF8 (RFC 6531)."""
    with SmtpSink(smtputf8=True) as sink:
        harness.sink = sink
        yield sink


INTERNATIONAL = ["ivan@пример.рф", "josé@example.com", "plain@example.com"]


async def test_idn_domains_go_as_a_labels_and_utf8_local_parts_need_smtputf8(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()  # the default sink does not offer SMTPUTF8
    campaign = seed_data.add_campaign(harness.database_url, user, INTERNATIONAL)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 2, 1)
    assert sorted(harness.sink.handler.recipients()) == [
        "ivan@xn--e1afmkfd.xn--p1ai",
        "plain@example.com",
    ]
    status, _, error = recipient_rows(harness, campaign)["josé@example.com"]
    assert status == "failed" and "SMTPUTF8" in str(error)


async def test_utf8_addresses_are_sent_over_smtputf8(
    time_env: WorkflowEnvironment, harness: Harness, utf8_sink: SmtpSink
) -> None:
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, INTERNATIONAL)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 3, 0)
    stored = {m.recipients[0]: m for m in utf8_sink.handler.messages}
    assert set(stored) == {"ivan@xn--e1afmkfd.xn--p1ai", "josé@example.com", "plain@example.com"}
    parsed = message_from_bytes(stored["josé@example.com"].data, policy=policy.default)
    assert "josé@example.com" in str(parsed["To"])


async def test_an_error_nothing_classifies_ends_visible_not_in_an_endless_retry(
    time_env: WorkflowEnvironment, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, 5)
    # Every commit of a "sent" row fails: an error the send path does not classify.
    harness.sql_exec(
        "ALTER TABLE mailer_sendlog ADD CONSTRAINT test_no_sends CHECK (status <> 'sent')"
    )
    await skip_to_monday_9(time_env)
    async with harness.worker(send_batch_max_attempts=2, circuit_breaker_threshold=2):
        handle = await harness.start(campaign)
        await time_env.sleep(timedelta(minutes=30))
        await wait_for(lambda: state_is(handle, "paused"), what="the breaker", timeout=60)
        state = await progress(handle)
        assert state.pause_reason.startswith("circuit breaker: 2")
        assert "send batch failed 2 times" in state.pause_reason
        row = harness.queue_row(campaign)
        assert row["campaign_status"] == "paused" and row["defer_reason"] == "transient_error"
        harness.sql_exec("ALTER TABLE mailer_sendlog DROP CONSTRAINT test_no_sends")
        await handle.signal("resume")
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 5)
    # The database's error (its DETAIL quotes the failing row) reached neither Temporal's
    # history nor the logs with an address in it.
    history = (await handle.fetch_history()).to_json()
    assert "violates check constraint" in history
    assert "@example.com" not in history
    assert "violates check constraint" in caplog.text
    assert "@example.com" not in caplog.text


async def test_a_batch_retried_after_hours_sends_nothing_and_the_workflow_decides_again(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """Retries of a failing batch planned at 17:59 reach 18:00: that attempt must not send
    on the plan of 17:59 (another day's window, after hours): it hands back to the workflow,
    which defers until the next morning."""
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, 50)
    harness.sql_exec(
        "ALTER TABLE mailer_sendlog ADD CONSTRAINT test_no_sends CHECK (status <> 'sent')"
    )
    monday_9 = next_monday_9(await time_env.get_current_time())
    await skip_to(time_env, monday_9 + timedelta(hours=8, minutes=59))
    async with harness.worker(send_batch_max_attempts=50):
        handle = await harness.start(campaign)
        await time_env.sleep(timedelta(minutes=3))  # the retries' backoff reaches 18:00
        await wait_for(lambda: _deferred_outside_hours(handle), what="the evening deferral")
        state = await progress(handle)
        assert state.deferred_until == monday_9 + timedelta(days=1)
        accepted_before_six = len(harness.sink.handler.messages)
        harness.sql_exec("ALTER TABLE mailer_sendlog DROP CONSTRAINT test_no_sends")
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 50)
    times = harness.sent_times(campaign)
    assert all(
        t.date() == (monday_9 + timedelta(days=1)).date() and 9 <= t.hour < 18 for t in times
    )
    # Messages the server accepted before 18:00 whose "sent" could not be committed are sent
    # again the next morning (the ledger never learned of them), with the same Message-ID.
    assert len(harness.sink.handler.messages) == 50 + accepted_before_six


async def _deferred_outside_hours(handle) -> bool:  # type: ignore[no-untyped-def]
    state = await progress(handle)
    return state.state == "deferred" and state.defer_reason == "outside_hours"


async def test_the_hourly_window_survives_a_redis_restart(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """Redis loses the hour's counter mid-hour (a restart): the window is seeded again from
    the send log, so the hour never hands out a fresh set of tokens."""
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, 150)
    await skip_to_monday_9(time_env)
    async with harness.worker(rate_per_hour=100):
        handle = await harness.start(campaign)
        await wait_for(
            lambda: harness.queue_row(campaign).get("defer_reason") == "rate_per_hour",
            what="the full window",
        )
        assert len(harness.sent_times(campaign)) == 100
        client = redis_lib.Redis.from_url(harness.settings.redis_connection_url)
        client.flushall()  # what a restart of a Redis that keeps nothing does
        client.close()
        await handle.signal("resume")  # try again within the same hour
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 150)
    per_hour = Counter(t.replace(minute=0, second=0, microsecond=0) for t in harness.sent_times())
    assert max(per_hour.values()) == 100, per_hour


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def starttls_sink(harness: Harness, private_ca: trustme.CA) -> Iterator[SmtpSink]:
    """A relay offering STARTTLS with a certificate from a private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("127.0.0.1").configure_cert(context)
    with SmtpSink(tls_context=context) as sink:
        harness.sink = sink
        yield sink


async def test_a_private_ca_is_trusted_once_the_account_names_it(
    time_env: WorkflowEnvironment,
    harness: Harness,
    starttls_sink: SmtpSink,
    private_ca: trustme.CA,
) -> None:
    user = harness.add_sender(smtp_tls="starttls")
    campaign = seed_data.add_campaign(harness.database_url, user, 3)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "paused"), what="the pause on an unknown CA")
        assert "TLS certificate rejected" in (await progress(handle)).pause_reason
        pem = private_ca.cert_pem.bytes().decode()
        harness.sql_exec("UPDATE mailer_globalmailaccount SET smtp_ca_pem = :pem", pem=pem)
        await handle.signal("resume")
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 3)
    assert len(starttls_sink.handler.messages) == 3


async def test_not_verifying_is_explicit_and_loud(
    time_env: WorkflowEnvironment,
    harness: Harness,
    starttls_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = harness.add_sender(smtp_tls="starttls", smtp_verify_tls=False)
    campaign = seed_data.add_campaign(harness.database_url, user, 2)
    await skip_to_monday_9(time_env)
    with caplog.at_level(logging.WARNING, logger="mailer.tls"):
        async with harness.worker():
            result = await finished(await harness.start(campaign))
    assert (result.status, result.sent) == ("sent", 2)
    assert "is NOT verified" in caplog.text


async def test_the_queue_row_tells_the_truth_while_batches_run(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """The error count is written back when a success resets it, and the row is
    ``processing`` only while a batch runs (the playbook's §1 SQL reads both)."""
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("all", 451, text="4.7.1 Rate limit exceeded")]
    harness.sink.handler.delay_seconds = 0.01
    campaign = seed_data.add_campaign(harness.database_url, user, 300)
    await skip_to_monday_9(time_env)
    async with harness.worker(send_batch_size=10):
        handle = await harness.start(campaign)
        await wait_for(
            lambda: harness.queue_row(campaign).get("consecutive_transient_errors") == 1,
            what="the throttled batch",
        )
        harness.sink.handler.rules = []  # the throttle is over
        await time_env.sleep(timedelta(minutes=6))
        await wait_for(
            lambda: (
                harness.queue_row(campaign).get("consecutive_transient_errors") == 0
                and 0 < len(harness.sent_times(campaign)) < 300
            ),
            what="the count written back while still sending",
        )
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 300)
