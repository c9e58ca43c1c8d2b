"""Unsubscribe tokens: who a ``List-Unsubscribe`` link unsubscribes, signed, no address in it.

A token names a campaign and a recipient row (or a test email request) and carries an HMAC
of them under ``MAILER_UNSUBSCRIBE_SECRET``: the unsubscribe service checks it without a
database lookup, and a forged or altered token is refused before anything is read. It is
URL-safe base64 of ``kind (1) | campaign UUID (16) | row id (8) | HMAC-SHA256[:16]``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import math
import re
import struct
import uuid
from dataclasses import dataclass
from urllib.parse import quote

_LAYOUT = struct.Struct(">c16sQ")
_MAC_BYTES = 16
# A token is the payload and its MAC in unpadded URL-safe base64: always this many characters.
_TOKEN_CHARS = math.ceil((_LAYOUT.size + _MAC_BYTES) * 4 / 3)
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058: the POST body and the header's value


class TargetKind(enum.Enum):
    RECIPIENT = b"r"  # a campaign message: mailer_campaignrecipient.id
    TEST_EMAIL = b"t"  # a test email: mailer_testemail.id


@dataclass(frozen=True)
class Target:
    """What a valid token unsubscribes."""

    kind: TargetKind
    campaign_id: uuid.UUID
    row_id: int


_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class BadToken(ValueError):
    """Not a token this secret signed (malformed, truncated, forged or altered)."""


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign(secret: str, target: Target) -> str:
    payload = _LAYOUT.pack(target.kind.value, target.campaign_id.bytes, target.row_id)
    return _encoded(payload + _mac(secret.encode(), payload))


def verify(secret: str, token: str) -> Target:
    """The target of ``token``, or :class:`BadToken`."""
    if not secret:
        raise BadToken("unsubscribe links are not configured (MAILER_UNSUBSCRIBE_SECRET)")
    # Canonical tokens only: the exact length and alphabet, and decoding then encoding gives
    # the same text (so `TOKEN=`, `TOKEN.~` or a changed last bit are not the same token).
    if len(token) != _TOKEN_CHARS or not _TOKEN_ALPHABET.fullmatch(token):
        raise BadToken("not a token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("not a token") from None
    if len(raw) != _LAYOUT.size + _MAC_BYTES or _encoded(raw) != token:
        raise BadToken("not a token")
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if not hmac.compare_digest(mac, _mac(secret.encode(), payload)):
        raise BadToken("the token's signature does not match")
    kind, campaign, row_id = _LAYOUT.unpack(payload)
    try:
        return Target(TargetKind(kind), uuid.UUID(bytes=campaign), row_id)
    except ValueError:
        raise BadToken("not a token") from None


@dataclass(frozen=True)
class Links:
    """One message's unsubscribe links: the header's value and the template's URL."""

    url: str  # https://…/u/TOKEN: GET shows a confirmation page, POST unsubscribes
    mailto: str  # mailto:…?subject=unsubscribe-TOKEN, or '' when no mailbox is configured

    @property
    def header(self) -> str:
        """``List-Unsubscribe``'s value (RFC 2369), the HTTPS URI first."""
        uris = [f"<{self.url}>"] + ([f"<{self.mailto}>"] if self.mailto else [])
        return ", ".join(uris)


def links(secret: str, base_url: str, mailbox: str, target: Target) -> Links:
    token = sign(secret, target)
    mailto = f"mailto:{mailbox}?subject={quote(f'unsubscribe-{token}')}" if mailbox else ""
    return Links(url=f"{base_url.rstrip('/')}/u/{token}", mailto=mailto)
