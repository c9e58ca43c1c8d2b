"""Feedback-loop complaints over real SMTP to `mailer web`'s receiver, their DKIM keys on a
real DNS server: only a report a configured loop vouches for counts as a complaint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from mailer.stack.servers import free_port
from tests.support import inbound_samples as samples
from tests.support.dns_zone import SigningKey, Zone, serving_zone
from tests.support.webservice import WebService, running_web
from tests.web.test_inbound_mail import deliver, header, status, suppression

MAIL_RU = "mail.ru"


@pytest.fixture(scope="module")
def mail_ru_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def zone(mail_ru_key: SigningKey) -> Iterator[Zone]:
    with serving_zone() as served:
        served.publish(MAIL_RU, mail_ru_key)
        yield served


@pytest.fixture
def loops_web(database_url: str, tmp_path: Path, zone: Zone) -> Iterator[WebService]:
    """The receiver with mail.ru as its one feedback loop, keys looked up on ``zone``."""
    env = {"MAILER_FEEDBACK_LOOPS": MAIL_RU, "MAILER_DKIM_NAMESERVERS": zone.nameserver}
    with running_web(database_url, tmp_path / "web.log", env) as service:
        yield service


async def test_a_complaint_signed_by_a_feedback_loop_counts(
    loops_web: WebService, campaign: tuple[str, list[int]], mail_ru_key: SigningKey
) -> None:
    campaign_id, ids = campaign
    raw = mail_ru_key.sign(samples.complaint(header(loops_web, campaign_id, ids[2])), MAIL_RU)
    assert (await deliver(loops_web, raw)).endswith(" complaint")
    assert suppression(loops_web) == [
        ("olga@example.com", "complaint", campaign_id, "feedback report: abuse, signed by mail.ru")
    ]
    view = status(loops_web, campaign_id)
    assert (view.complaints, view.unverified_complaints) == (1, 0)


async def test_reports_no_loop_vouches_for_are_suppressed_but_not_counted(
    loops_web: WebService,
    campaign: tuple[str, list[int]],
    mail_ru_key: SigningKey,
    zone: Zone,
) -> None:
    """Unsigned; signed by a stranger's own domain (its key published); signed as mail.ru
    with another key; mail.ru's signature on a report altered afterwards."""
    campaign_id, ids = campaign
    stranger = SigningKey.generate()
    zone.publish("evil.example", stranger)
    unsigned = samples.complaint(header(loops_web, campaign_id, ids[0]))
    own_domain = stranger.sign(
        samples.complaint(header(loops_web, campaign_id, ids[1]), sender="fbl@evil.example"),
        "evil.example",
    )
    impostor = stranger.sign(samples.complaint(header(loops_web, campaign_id, ids[2])), MAIL_RU)
    for raw in (unsigned, own_domain, impostor):
        assert (await deliver(loops_web, raw)).endswith(" unverified_complaint")
    view = status(loops_web, campaign_id)
    assert (view.complaints, view.unverified_complaints) == (0, 3)
    notes = {row[0]: row[3] for row in suppression(loops_web)}
    assert notes["anna.k@example.com"] == (
        "feedback report: abuse, unverified: no valid DKIM signature of a feedback loop"
    )
    # Only a loop's keys are looked up: a stranger's message picks no zone for us to query.
    assert all(name.endswith("mail.ru.") for name in zone.asked)

    tampered = mail_ru_key.sign(samples.complaint(header(loops_web, campaign_id, ids[0])), MAIL_RU)
    tampered = tampered.replace(b"Subject: FW:", b"Subject: Re:")
    # Had the altered report verified, it would have upgraded the unverified complaint.
    assert (await deliver(loops_web, tampered)).endswith(" ignored")
    assert status(loops_web, campaign_id).complaints == 0


async def test_a_vouched_complaint_upgrades_an_unverified_one(
    loops_web: WebService, campaign: tuple[str, list[int]], mail_ru_key: SigningKey
) -> None:
    campaign_id, ids = campaign
    report = samples.complaint(header(loops_web, campaign_id, ids[1]))
    assert (await deliver(loops_web, report)).endswith(" unverified_complaint")
    assert (await deliver(loops_web, mail_ru_key.sign(report, MAIL_RU))).endswith(" complaint")
    assert [row[1] for row in suppression(loops_web)] == ["complaint"]
    view = status(loops_web, campaign_id)
    assert (view.complaints, view.unverified_complaints) == (1, 0)


async def test_with_dns_failing_a_signed_report_waits_for_a_retry(
    database_url: str,
    tmp_path: Path,
    campaign: tuple[str, list[int]],
    mail_ru_key: SigningKey,
    loops_web: WebService,
) -> None:
    """A key that cannot be looked up now is not a forgery: 451, and the sender's retry is
    judged once DNS answers."""
    campaign_id, ids = campaign
    raw = mail_ru_key.sign(samples.complaint(header(loops_web, campaign_id, ids[0])), MAIL_RU)
    no_dns = {
        "MAILER_FEEDBACK_LOOPS": MAIL_RU,
        "MAILER_DKIM_NAMESERVERS": f"127.0.0.1:{free_port()}",
    }
    with (
        running_web(database_url, tmp_path / "no-dns.log", no_dns) as down,
        pytest.raises(aiosmtplib.SMTPDataError) as refused,
    ):
        await deliver(down, raw)
    assert refused.value.code == 451
    assert suppression(loops_web) == []
    assert (await deliver(loops_web, raw)).endswith(" complaint")


async def test_by_sender_the_from_domain_vouches_behind_a_dmarc_enforcing_mta(
    database_url: str, tmp_path: Path, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    env = {"MAILER_FEEDBACK_LOOPS": MAIL_RU, "MAILER_FEEDBACK_LOOP_CHECK": "sender"}
    with running_web(database_url, tmp_path / "web.log", env) as web:
        from_loop = samples.complaint(header(web, campaign_id, ids[0]))
        from_stranger = samples.complaint(
            header(web, campaign_id, ids[1]), sender="abuse@evil.example"
        )
        assert (await deliver(web, from_loop)).endswith(" complaint")
        assert (await deliver(web, from_stranger)).endswith(" unverified_complaint")
        view = status(web, campaign_id)
    assert (view.complaints, view.unverified_complaints) == (1, 1)


async def test_a_report_piling_up_signatures_costs_at_most_three_key_lookups(
    loops_web: WebService, campaign: tuple[str, list[int]], zone: Zone
) -> None:
    campaign_id, ids = campaign
    forged = b"".join(
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mail.ru; s=k%d; "
        b"h=from:subject; bh=AAAA; b=AAAA\r\n" % n
        for n in range(5000)
    )
    raw = forged + samples.complaint(header(loops_web, campaign_id, ids[0]))
    assert (await deliver(loops_web, raw)).endswith(" unverified_complaint")
    assert len(zone.asked) == 3  # the first three, then no more
