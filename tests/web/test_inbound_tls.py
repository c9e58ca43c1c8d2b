"""STARTTLS on `mailer web`'s receiver: offered when a certificate is configured, so the
tokens in returned reports need not cross the internet in clear."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import trustme

from mailer.mail.unsubscribe_tokens import Target, TargetKind, links
from mailer.stack.servers import free_port
from tests.support import inbound_samples as samples
from tests.support.webservice import SECRET, running_web, web_refusing_to_start
from tests.web.test_inbound_mail import MAILBOX, suppression


def _certificate(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "inbound.pem", tmp_path / "inbound.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return {"MAILER_INBOUND_TLS_CERT": str(cert), "MAILER_INBOUND_TLS_KEY": str(key)}


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_with_a_certificate_the_receiver_offers_starttls(
    database_url: str, tmp_path: Path, campaign: tuple[str, list[int]]
) -> None:
    ca = trustme.CA()
    env = _certificate(tmp_path, ca)
    campaign_id, ids = campaign
    with running_web(database_url, tmp_path / "web.log", env) as web:
        target = Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), ids[0])
        mailto = urlsplit(links(SECRET, web.base_url, MAILBOX, target).mailto)
        raw = samples.mailto_unsubscribe(parse_qs(mailto.query)["subject"][0])
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=web.inbound_port,
            start_tls=False,
            tls_context=_trusting(ca),
        )
        async with smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("starttls")
            await smtp.starttls()
            assert smtp.get_transport_info("sslcontext") is not None
            _, reply = await smtp.sendmail("", [MAILBOX], raw)
        assert reply.endswith("unsubscribed")
        # A sender without TLS still delivers (STARTTLS is offered, not required).
        plain = aiosmtplib.SMTP(hostname="127.0.0.1", port=web.inbound_port, start_tls=False)
        async with plain:
            _, reply = await plain.sendmail("", [MAILBOX], samples.mailto_unsubscribe("Вопрос"))
            assert reply.endswith("ignored")
    assert [row[1] for row in suppression(web)] == ["unsubscribed"]


async def test_without_a_certificate_starttls_is_not_offered(
    database_url: str, tmp_path: Path
) -> None:
    with running_web(database_url, tmp_path / "web.log") as web:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=web.inbound_port) as smtp:
            await smtp.ehlo()
            assert not smtp.supports_extension("starttls")


def test_an_unusable_certificate_is_one_line_naming_the_setting(
    database_url: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    env = _certificate(tmp_path, ca)
    other = tmp_path / "other.key"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    env["MAILER_INBOUND_TLS_KEY"] = str(other)  # a key that is not the certificate's
    result = web_refusing_to_start(database_url, {"MAILER_INBOUND_PORT": str(free_port()), **env})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: MAILER_INBOUND_TLS_CERT: cannot use {env['MAILER_INBOUND_TLS_CERT']} with "
        f"{other}: KEY_VALUES_MISMATCH"
    )
