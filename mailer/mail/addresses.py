"""Addresses as they go over SMTP: IDN domains as A-labels, UTF-8 local parts only over SMTPUTF8.

A Russian address book holds ``ivan@пример.рф`` and ``почта@пример.рф``. The domain can
always travel as its A-label (``xn--e1afmkfd.xn--p1ai``: every server accepts it); a
non-ASCII local part cannot be rewritten, so it needs a server that offers SMTPUTF8
(RFC 6531), and without one that recipient fails with a reason, alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import idna


class UnsendableAddress(ValueError):
    """The address cannot be sent over this connection; the message says why."""


@dataclass(frozen=True)
class TransportAddress:
    """An address ready for MAIL FROM / RCPT TO and the message's header."""

    address: str
    needs_smtputf8: bool


def a_label_domain(domain: str) -> str:
    """``пример.рф`` → ``xn--e1afmkfd.xn--p1ai``; ASCII domains unchanged."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UnsendableAddress(f"the domain {domain!r} is not a valid IDN: {exc}") from None


def for_transport(address: str, *, server_smtputf8: bool) -> TransportAddress:
    """How ``address`` is sent to a server that does (or does not) offer SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise UnsendableAddress(f"{address!r} is not an address")
    ascii_address = f"{local}@{a_label_domain(domain)}"
    if local.isascii():
        return TransportAddress(ascii_address, needs_smtputf8=False)
    if not server_smtputf8:
        raise UnsendableAddress(
            "the address's local part is not ASCII and the server does not offer SMTPUTF8"
        )
    return TransportAddress(ascii_address, needs_smtputf8=True)


def has_ascii_form(address: str) -> bool:
    """Whether ``address`` can be sent without SMTPUTF8 (its local part is ASCII)."""
    return address.rpartition("@")[0].isascii()
