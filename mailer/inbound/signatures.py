"""Which feedback loops' DKIM signatures on a received report verify (``dkimpy``, DNS).

Only signatures claiming a configured loop's domain are checked, so a stranger's message
cannot make the receiver query a DNS zone of its choosing, and at most
:data:`MAX_CHECKED` of them, each key lookup within :data:`LOOKUP_SECONDS`: a report costs a
bounded time whatever it carries.
"""

from __future__ import annotations

import logging

import dkim
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailer.core.settings import nameserver_addresses
from mailer.inbound.feedback_loops import loop_of

# A provider signs its report once or twice (its own domain, perhaps its relay's): the
# first MAX_READ signatures are read, and at most MAX_CHECKED of them (a loop's) checked.
MAX_READ = 10
MAX_CHECKED = 3
LOOKUP_SECONDS = 3.0

# dkimpy logs a forged signature at ERROR: a stranger's message is not our error.
_quiet = logging.getLogger("mailer.inbound.dkim")
_quiet.setLevel(logging.CRITICAL)


class KeyLookupFailed(Exception):
    """A signing key could not be looked up now (DNS timed out or failed): the report is
    answered ``451`` and its sender tries again later, rather than counted as unverified."""


def parse_nameservers(text: str) -> list[dns.nameserver.Nameserver]:
    """``MAILER_DKIM_NAMESERVERS`` (checked by the settings) → dnspython's nameservers."""
    return [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameserver_addresses(text)]


class SignatureChecker:
    """Checks reports' DKIM signatures, looking keys up on ``nameservers`` (empty: the
    system's resolver, ``/etc/resolv.conf``)."""

    def __init__(self, nameservers: list[dns.nameserver.Nameserver]) -> None:
        self.resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            self.resolver.nameservers = list(nameservers)
        self.resolver.lifetime = LOOKUP_SECONDS

    def _txt(self, name: bytes, timeout: float = LOOKUP_SECONDS) -> bytes | None:
        """dkimpy's key lookup: the TXT record at ``name``, ``None`` when there is none."""
        try:
            answer = self.resolver.resolve(
                name.decode("ascii"), dns.rdatatype.TXT, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise KeyLookupFailed(f"DKIM key lookup failed: {type(exc).__name__}") from None
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None

    def signed_by(self, raw: bytes, loops: frozenset[str]) -> tuple[str, ...]:
        """The loop domains whose signatures on ``raw`` verify.

        Raises KeyLookupFailed when a key could not be looked up now."""
        verifier = dkim.DKIM(raw, logger=_quiet, timeout=LOOKUP_SECONDS)
        verified: list[str] = []
        checked = 0
        for index in range(min(_signature_count(verifier), MAX_READ)):
            try:
                prepared = verifier.verify_headerprep(index)
            except dkim.DKIMException:
                continue  # a malformed signature proves nothing
            if not prepared:
                break
            signature, include_headers, signature_headers = prepared
            domain = signature[b"d"].decode("ascii", "replace").lower()
            if loop_of(domain, loops) is None:
                continue
            checked += 1
            if checked > MAX_CHECKED:
                break
            try:
                good = verifier.verify_sig(
                    signature, include_headers, signature_headers[index], self._txt
                )
            except dkim.DKIMException:
                good = False
            if good:
                verified.append(domain)
        return tuple(verified)


def _signature_count(verifier: dkim.DKIM) -> int:
    return sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
