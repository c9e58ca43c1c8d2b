"""What a received message is, read from its bytes alone (no I/O).

Three kinds matter, and each names its recipient by the unsubscribe token of the message it
answers (the token is in that message's ``List-Unsubscribe``, so in any copy of its headers):

- an **unsubscribe** sent to the ``List-Unsubscribe`` ``mailto:`` URI (RFC 2369): its subject
  is the URI's ``unsubscribe-TOKEN``;
- a **delivery status notification** (RFC 3464: ``multipart/report;
  report-type=delivery-status``): the per-recipient ``Action``, ``Status`` and
  ``Diagnostic-Code``, and the returned message or its headers;
- a **feedback report** (ARF, RFC 5965: ``report-type=feedback-report``): a spam complaint
  through a mailbox provider's feedback loop, with the original message or its headers.

Anything else is :attr:`InboundKind.OTHER`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email import message_from_bytes, message_from_string
from email.message import Message
from email.policy import default as default_policy
from email.utils import parseaddr

from mailer.mail.smtp_replies import means_mailbox_gone

# The URL-safe base64 of a token (55 characters); shorter runs are not tokens.
_TOKEN = r"([A-Za-z0-9_-]{40,})"
_SUBJECT_TOKEN = re.compile(rf"unsubscribe-{_TOKEN}")
_LINK_TOKENS = re.compile(rf"/u/{_TOKEN}|unsubscribe-{_TOKEN}")
_REPLY_CODE = re.compile(r"^\s*(?:smtp|x-[\w-]+)\s*;\s*([245]\d\d)\b", re.IGNORECASE)
# How a report carries the message it is about: whole, or its headers only.
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers")


class InboundKind(enum.StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    OTHER = "other"


@dataclass(frozen=True)
class FailedRecipient:
    """One ``Action: failed`` block of a delivery report."""

    address: str  # Final-Recipient (else Original-Recipient), lower-cased, type dropped
    status: str  # e.g. "5.1.1"
    diagnostic: str  # e.g. "smtp; 550 5.1.1 <…>: Recipient address rejected: User unknown"

    @property
    def mailbox_gone(self) -> bool:
        """A hard bounce: the reply says the mailbox does not exist. A full mailbox, a policy
        block or a temporary failure is not one."""
        if not self.status.startswith("5."):
            return False
        reply = _REPLY_CODE.match(self.diagnostic)
        code = int(reply.group(1)) if reply else None
        return means_mailbox_gone(code, self.diagnostic) or means_mailbox_gone(None, self.status)


@dataclass(frozen=True)
class InboundMessage:
    kind: InboundKind
    tokens: tuple[str, ...]  # candidate unsubscribe tokens, not yet verified
    failed: tuple[FailedRecipient, ...] = ()  # a delivery report's failed recipients
    feedback_type: str = ""  # a feedback report's Feedback-Type (abuse, fraud, …)
    sender_domain: str = ""  # a feedback report's From domain, lower-cased ('' if none)


def read(raw: bytes) -> InboundMessage:
    message = message_from_bytes(raw, policy=default_policy)
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "", header="content-type")).lower()
        if report_type == "delivery-status":
            return InboundMessage(InboundKind.BOUNCE, _original_tokens(message), _failed(message))
        if report_type == "feedback-report":
            return InboundMessage(
                InboundKind.COMPLAINT,
                _original_tokens(message),
                (),
                _feedback_type(message),
                _sender_domain(message),
            )
        return InboundMessage(InboundKind.OTHER, ())
    if _automatic(message):
        # An out-of-office answer quoting the subject is not the recipient asking (RFC 3834).
        return InboundMessage(InboundKind.OTHER, ())
    subject_token = _SUBJECT_TOKEN.search(str(message.get("subject", "")))
    if subject_token is not None:
        return InboundMessage(InboundKind.UNSUBSCRIBE, (subject_token.group(1),))
    return InboundMessage(InboundKind.OTHER, ())


def _automatic(message: Message) -> bool:
    """Sent by a program, not a person: Auto-Submitted (RFC 3834) or an old Precedence."""
    submitted = str(message.get("auto-submitted", "no")).strip().lower()
    precedence = str(message.get("precedence", "")).strip().lower()
    return submitted != "no" or precedence in ("bulk", "junk", "auto_reply")


def _parts(message: Message) -> list[Message]:
    return list(message.walk()) if message.is_multipart() else [message]


def _original_headers(message: Message) -> list[Message]:
    """The returned original's headers, whichever way the report carries them."""
    found: list[Message] = []
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found.append(payload[0])  # message/rfc822: already parsed
        else:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
            found.append(message_from_string(text, policy=default_policy))
    return found


# A real report names one message (one or two links); a hostile one may repeat the header
# 80,000 times: de-duplicated in a dict (linear) and cut at this many.
MAX_TOKENS = 20


def _original_tokens(message: Message) -> tuple[str, ...]:
    tokens: dict[str, None] = {}
    for headers in _original_headers(message):
        for value in headers.get_all("list-unsubscribe", []):
            for match in _LINK_TOKENS.finditer(str(value)):
                tokens[match.group(1) or match.group(2)] = None
                if len(tokens) >= MAX_TOKENS:
                    return tuple(tokens)
    return tuple(tokens)


def _status_blocks(message: Message) -> list[Message]:
    """The per-message and per-recipient field blocks of ``message/delivery-status``."""
    blocks: list[Message] = []
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks.extend(block for block in payload if isinstance(block, Message))
    return blocks


def _without_type(value: str) -> str:
    """``rfc822; a@example.com`` → ``a@example.com`` (RFC 3464 address-type)."""
    _, separator, address = value.partition(";")
    return (address if separator else value).strip().strip("<>").lower()


def _failed(message: Message) -> tuple[FailedRecipient, ...]:
    failed = []
    for block in _status_blocks(message):
        if str(block.get("action", "")).strip().lower() != "failed":
            continue
        recipient = block.get("final-recipient") or block.get("original-recipient") or ""
        failed.append(
            FailedRecipient(
                address=_without_type(str(recipient)),
                status=str(block.get("status", "")).strip(),
                diagnostic=" ".join(str(block.get("diagnostic-code", "")).split()),
            )
        )
    return tuple(failed)


def _sender_domain(message: Message) -> str:
    """The domain of the single ``From`` address, or '' (none, several, or unreadable)."""
    _, address = parseaddr(str(message.get("from", "")))
    local, at, domain = address.rpartition("@")
    return domain.strip().lower().rstrip(".") if local and at else ""


def _feedback_type(message: Message) -> str:
    for part in _parts(message):
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return str(payload[0].get("feedback-type", "")).strip().lower()
    return ""
