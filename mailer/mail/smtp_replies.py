"""What an SMTP failure means for the campaign (RFC 5321 reply codes, RFC 3463 classes).

- recipient_deferred: a 4xx to RCPT or to the message that is about that recipient
  (greylisting, mailbox full, its domain unreachable) or says nothing either way
  (mailer.mail.temporary_replies reads which): that recipient is tried again later; the
  others go on.
- transient: a 4xx about the session (421, rate limits, a full queue), any 4xx to MAIL FROM
  or the greeting, timeouts, disconnects, refused connections, TLS connections dropped during
  the handshake: stop the batch and retry after the delay; counts towards the circuit breaker.
- recipient: 5xx to RCPT or DATA: that recipient is ``failed`` and never retried.
- configuration: 535 and other permanent AUTH failures, 5xx to MAIL FROM or HELO, a
  certificate that does not verify, a server without STARTTLS, a username configured for a
  server that offers no AUTH: no message can go out until an operator fixes the account, so
  the campaign pauses at once.
"""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass

import aiosmtplib

from mailer.mail.temporary_replies import TemporaryKind, read_temporary

ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;]+")


def redact_addresses(text: str) -> str:
    """``text`` with every e-mail address replaced by ``<address>``."""
    return ADDRESS.sub("<address>", text)


class ErrorClass(enum.StrEnum):
    TRANSIENT = "transient"
    RECIPIENT_DEFERRED = "recipient_deferred"
    RECIPIENT = "recipient"
    CAMPAIGN = "campaign"  # a run of 5xx at DATA across recipients: the campaign is refused
    CONFIGURATION = "configuration"


class Stage(enum.StrEnum):
    CONNECT = "connect"
    HELO = "helo"
    TLS = "tls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class SmtpFailure:
    error_class: ErrorClass
    stage: Stage
    code: int | None
    message: str
    # What a 4xx said about itself (temporary_replies), for the send path's runs and backoff.
    temporary: TemporaryKind | None = None

    def describe(self, *, redact: bool = True) -> str:
        """One line for operators. Redacted (the default) for anything that reaches the
        workflow or the logs: servers quote the recipient's address in their replies."""
        code = f"{self.code} " if self.code else ""
        text = f"{self.stage.value}: {code}{self.message}".strip()
        return redact_addresses(text) if redact else text


def classify_reply(stage: Stage, code: int, text: str = "") -> ErrorClass:
    """The class of an SMTP error reply ``code`` (with its ``text``) received at ``stage``."""
    if 400 <= code < 500:
        if stage in (Stage.RCPT, Stage.DATA):
            throttle = read_temporary(code, text).kind == TemporaryKind.THROTTLE
            return ErrorClass.TRANSIENT if throttle else ErrorClass.RECIPIENT_DEFERRED
        return ErrorClass.TRANSIENT
    if stage in (Stage.RCPT, Stage.DATA):
        return ErrorClass.RECIPIENT
    if stage in (Stage.AUTH, Stage.MAIL, Stage.HELO, Stage.TLS, Stage.CONNECT):
        return ErrorClass.CONFIGURATION
    return ErrorClass.TRANSIENT


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _certificate_rejected(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text
    )


def classify_exception(exc: BaseException, stage: Stage) -> SmtpFailure:
    """Map an aiosmtplib (or socket/TLS) exception raised at ``stage`` to a failure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
        stage = Stage.RCPT
    if _certificate_rejected(exc):
        return SmtpFailure(
            ErrorClass.CONFIGURATION, Stage.TLS, None, f"TLS certificate rejected: {exc}"
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        error_class = ErrorClass.TRANSIENT if exc.code < 500 else ErrorClass.CONFIGURATION
        return SmtpFailure(
            error_class, Stage.AUTH, exc.code, f"authentication failed: {_first_line(exc.message)}"
        )
    stage = _stage_of(exc, stage)
    if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
        # A dropped or reset connection, TLS handshake included: the server may be back soon.
        reason = _first_line(str(exc)) or type(exc).__name__
        return SmtpFailure(ErrorClass.TRANSIENT, stage, None, f"{type(exc).__name__}: {reason}")
    if isinstance(exc, aiosmtplib.SMTPException) and "TLS" in str(exc) and stage == Stage.TLS:
        return SmtpFailure(ErrorClass.CONFIGURATION, Stage.TLS, None, f"TLS failed: {exc}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return SmtpFailure(ErrorClass.CONFIGURATION, stage, None, _first_line(str(exc)))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return reply_failure(stage, exc.code, exc.message)
    # Refused connections and other socket errors.
    reason = _first_line(str(exc)) or type(exc).__name__
    return SmtpFailure(ErrorClass.TRANSIENT, stage, None, f"{type(exc).__name__}: {reason}")


def reply_failure(stage: Stage, code: int, text: str) -> SmtpFailure:
    """The failure an error reply ``code`` with ``text`` at ``stage`` is."""
    if 400 <= code < 500 and stage in (Stage.RCPT, Stage.DATA):
        temporary = read_temporary(code, text).kind
        error_class = (
            ErrorClass.TRANSIENT
            if temporary == TemporaryKind.THROTTLE
            else ErrorClass.RECIPIENT_DEFERRED
        )
        return SmtpFailure(error_class, stage, code, _first_line(text), temporary)
    return SmtpFailure(classify_reply(stage, code, text), stage, code, _first_line(text))


def _stage_of(exc: BaseException, stage: Stage) -> Stage:
    """The SMTP step an aiosmtplib exception names, else ``stage``."""
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return Stage.RCPT
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return Stage.MAIL
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return Stage.DATA
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return Stage.HELO
    return stage


# RFC 3463: X.1.1 bad destination mailbox, X.1.2 bad destination system (the domain does
# not exist), X.1.10 recipient address has a null MX. Only these mean "no such mailbox".
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILBOX_GONE_CODES = {"5.1.1", "5.1.2", "5.1.10"}
# A 550 without an enhanced code: the usual wordings of "that mailbox does not exist".
_MAILBOX_GONE_TEXT = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|account)|"
    r"(mailbox|user|account|address|recipient) (does not|doesn't) exist|"
    r"mailbox (not found|unavailable)|invalid (mailbox|recipient)|"
    r"нет такого (пользователя|ящика)|(пользователь|ящик) не существует",
    re.IGNORECASE,
)


def is_hard_bounce(failure: SmtpFailure) -> bool:
    """Whether a permanent refusal means the mailbox does not exist (the address goes on
    the suppression list). Other 5xx — a policy block, spam, a full mailbox — do not."""
    if failure.code is None or not 500 <= failure.code < 600:
        return False
    if failure.stage not in (Stage.RCPT, Stage.DATA):
        return False
    return means_mailbox_gone(failure.code, failure.message)


def means_mailbox_gone(code: int | None, text: str) -> bool:
    """Whether a reply (``code`` and its text, which may hold an enhanced status code) says
    the mailbox does not exist: shared by SMTP refusals and delivery reports (DSNs)."""
    enhanced = _ENHANCED.search(text)
    if enhanced is not None:
        return enhanced.group(0) in _MAILBOX_GONE_CODES
    return code == 550 and _MAILBOX_GONE_TEXT.search(text) is not None
