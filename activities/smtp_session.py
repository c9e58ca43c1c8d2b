"""Opening the account's SMTP session: connect, TLS as configured, log in.

Shared by campaign batches and test emails, so a test email goes exactly the way the
campaign's messages will (same host, TLS, trust and credentials).
"""

from __future__ import annotations

import ssl

import aiosmtplib

from activities.smtp_envelope import adopt_reply_queue
from mailer.mail.smtp_replies import ErrorClass, SmtpFailure, Stage, classify_exception
from mailer.mail.tls import BadCertificate, tls_context, warn_unverified
from mailer.mail.views import AccountView


class SmtpSessionFailed(Exception):
    """The session could not be opened; ``failure`` says at which stage and why."""

    def __init__(self, failure: SmtpFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


async def open_smtp(account: AccountView, timeout: float) -> aiosmtplib.SMTP:
    """A connected (and, with a username, authenticated) session to the account's server.

    Raises :class:`SmtpSessionFailed` with the failure classified.
    """
    stage = Stage.CONNECT
    uses_tls = account.smtp_tls != "none"
    try:
        context = tls_context(account.smtp_ca_pem, account.smtp_verify_tls)
    except BadCertificate as exc:
        failure = SmtpFailure(ErrorClass.CONFIGURATION, Stage.TLS, None, f"smtp_ca_pem: {exc}")
        raise SmtpSessionFailed(failure) from None
    if uses_tls and not account.smtp_verify_tls:
        warn_unverified(account.smtp_host)
    smtp = aiosmtplib.SMTP(
        hostname=account.smtp_host,
        port=account.smtp_port,
        timeout=timeout,
        use_tls=account.smtp_tls == "tls",
        start_tls=account.smtp_tls == "starttls",
        tls_context=context,
        validate_certs=account.smtp_verify_tls,
    )
    try:
        await smtp.connect()
        if account.smtp_username:
            if smtp.is_ehlo_or_helo_needed:  # after STARTTLS: what does it offer now?
                stage = Stage.HELO
                await smtp.ehlo()
            stage = Stage.AUTH
            if not smtp.supports_extension("auth"):
                smtp.close()
                raise SmtpSessionFailed(_auth_not_offered(account))
            await smtp.login(account.smtp_username, account.smtp_password)
        stage = Stage.HELO
        await adopt_reply_queue(smtp)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        if uses_tls and stage == Stage.CONNECT and _looks_like_tls(exc):
            stage = Stage.TLS
        raise SmtpSessionFailed(classify_exception(exc, stage)) from exc
    return smtp


async def close_smtp(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely; drop the connection if the server does not answer."""
    try:
        await smtp.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        smtp.close()


def _auth_not_offered(account: AccountView) -> SmtpFailure:
    """A username is configured but the server offers no AUTH: no retry can fix that (many
    servers, Postfix's submission among them, offer AUTH only after STARTTLS)."""
    hint = (
        " (it may offer AUTH only over TLS: set smtp_tls to starttls or tls)"
        if account.smtp_tls == "none"
        else ""
    )
    message = f"the account has a username but the server does not offer AUTH{hint}"
    return SmtpFailure(ErrorClass.CONFIGURATION, Stage.AUTH, None, message)


def _looks_like_tls(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) or "tls" in str(exc).lower() or "ssl" in str(exc).lower()
