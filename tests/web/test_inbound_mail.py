"""Mail that comes back, over real SMTP to `mailer web`'s receiver: a mail client's
``mailto:`` unsubscribe, a Postfix bounce, a feedback-loop complaint (tests/web/test_complaints.py) — and what
must change nothing (forged tokens, soft bounces, reports about someone else, mail we do not read)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import pytest

from db.engine import session_scope
from db.queries import CampaignStatusView, campaign_status_view
from mailer.mail.unsubscribe_tokens import Target, TargetKind, links
from mailer.stack import seed_data
from mailer.stack.seed_data import sql_rows
from mailer.stack.servers import free_port
from tests.support import inbound_samples as samples
from tests.support.webservice import SECRET, WebService, running_web, web_refusing_to_start

MAILBOX = "unsubscribe@news.example.com"


def header(web: WebService, campaign_id: str, recipient_id: int, secret: str = SECRET) -> str:
    """The List-Unsubscribe of that recipient's message, made as the worker makes it."""
    target = Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), recipient_id)
    return links(secret, web.base_url, MAILBOX, target).header


async def deliver(web: WebService, raw: bytes, sender: str = "") -> str:
    """Send ``raw`` to the receiver as a mail server would; returns its reply to DATA."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=web.inbound_port) as smtp:
        _, reply = await smtp.sendmail(sender, [MAILBOX], raw)
    return reply


def status(web: WebService, campaign_id: str) -> CampaignStatusView:
    with session_scope(web.database_url) as session:
        view = campaign_status_view(session, uuid.UUID(campaign_id))
    assert view is not None
    return view


def suppression(web: WebService) -> list[tuple[object, ...]]:
    return sql_rows(
        web.database_url,
        "SELECT address, reason, campaign_id::text, note FROM mailer_suppression ORDER BY address",
    )


async def test_a_mail_clients_mailto_unsubscribe_suppresses_its_recipient(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    target = Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), ids[0])
    mailto = urlsplit(links(SECRET, web.base_url, MAILBOX, target).mailto)
    assert mailto.path == MAILBOX
    subject = parse_qs(mailto.query)["subject"][0]  # what the client puts in the subject

    reply = await deliver(web, samples.mailto_unsubscribe(subject), "anna.k@example.com")
    assert reply.endswith("unsubscribed")
    assert suppression(web) == [
        ("anna.k@example.com", "unsubscribed", campaign_id, "mailto unsubscribe")
    ]
    assert (await deliver(web, samples.mailto_unsubscribe(subject))).endswith("ignored")
    assert len(suppression(web)) == 1
    assert status(web, campaign_id).unsubscribes == 1
    assert "anna.k@example.com" not in web.log.read_text()


async def test_a_hard_bounce_suppresses_and_counts_in_the_campaign_status(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    reply = await deliver(web, samples.bounce("ivan@example.com", header(web, campaign_id, ids[1])))
    assert reply.endswith("hard_bounce")
    [(address, reason, from_campaign, note)] = suppression(web)
    assert (address, reason, from_campaign) == ("ivan@example.com", "hard_bounce", campaign_id)
    assert str(note).startswith("delivery report: 5.1.1 smtp; 550 5.1.1")
    view = status(web, campaign_id)
    assert (view.hard_bounces, view.unsubscribes, view.complaints) == (1, 0, 0)


async def test_soft_bounces_and_reports_about_another_address_change_nothing(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    full = samples.bounce(
        "olga@example.com",
        header(web, campaign_id, ids[2]),
        status="5.2.2",
        reply="552 5.2.2 <{r}>: Mailbox full",
    )
    assert "not a hard bounce (5.2.2)" in await _summary(web, full)
    # Anna's message, forwarded by her to a mailbox that no longer exists: not Anna's.
    forwarded = samples.bounce("anna@old-employer.example", header(web, campaign_id, ids[0]))
    assert "an address other than the token's" in await _summary(web, forwarded)
    assert suppression(web) == []


async def test_forged_tokens_and_unrelated_mail_are_accepted_and_change_nothing(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    forged = header(web, campaign_id, ids[0], secret="someone-else's-secret")
    for raw in (
        samples.bounce("anna.k@example.com", forged),
        samples.complaint(forged),
        samples.mailto_unsubscribe("Вопрос по тарифу"),
    ):
        assert (await deliver(web, raw)).endswith("ignored")  # 250: no sender should retry
    assert suppression(web) == []


async def test_with_the_database_down_mail_is_refused_for_now_and_recorded_on_retry(
    web: WebService, campaign: tuple[str, list[int]], tmp_path: Path
) -> None:
    """451 while PostgreSQL is unreachable: the sending server keeps the report and retries
    later; nothing is accepted that was not recorded."""
    campaign_id, ids = campaign
    raw = samples.complaint(header(web, campaign_id, ids[0]))
    unreachable = f"postgresql+psycopg://mailer@127.0.0.1:{free_port()}/mailer"
    with (
        running_web(unreachable, tmp_path / "down.log") as down,
        pytest.raises(aiosmtplib.SMTPDataError) as refused,
    ):
        await deliver(down, raw)
    assert refused.value.code == 451
    assert suppression(web) == []
    assert (await deliver(web, raw)).endswith("unverified_complaint")  # no loop configured
    assert [row[1] for row in suppression(web)] == ["unverified_complaint"]


async def _summary(web: WebService, raw: bytes) -> str:
    """The receiver's one line about ``raw``, from the service's log (reply says "ignored")."""
    before = web.log.read_text()
    assert (await deliver(web, raw)).endswith("ignored")
    return web.log.read_text()[len(before) :]


def test_a_taken_inbound_port_is_one_line_naming_the_setting(database_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = web_refusing_to_start(database_url, {"MAILER_INBOUND_PORT": str(port)})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: MAILER_INBOUND_PORT: cannot receive mail on 127.0.0.1:{port}: "
        "Address already in use"
    )


async def test_a_bounce_for_an_idn_mailbox_names_it_as_it_was_sent(
    web: WebService, database_url: str
) -> None:
    """The report names the address as Postfix sent it, the domain in A-labels."""
    user = seed_data.add_user(database_url)
    campaign_id = seed_data.add_campaign(database_url, user, ["Olga@Пример.рф"])
    [(row_id,)] = sql_rows(
        database_url,
        "SELECT id FROM mailer_campaignrecipient WHERE campaign_id = :c",
        c=campaign_id,
    )
    raw = samples.bounce("olga@xn--e1afmkfd.xn--p1ai", header(web, campaign_id, int(str(row_id))))
    assert (await deliver(web, raw)).endswith("hard_bounce")
    assert [row[:2] for row in suppression(web)] == [("olga@пример.рф", "hard_bounce")]
