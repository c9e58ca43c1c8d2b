"""The TLS context for the SMTP account: the system's CAs, a private CA, or (explicitly,
for test relays only) no verification at all."""

from __future__ import annotations

import functools
import logging
import ssl

log = logging.getLogger("mailer.tls")


class BadCertificate(ValueError):
    """The PEM text holds no usable CA certificate."""


@functools.lru_cache(maxsize=8)
def tls_context(ca_pem: str, verify: bool) -> ssl.SSLContext:
    """A client context trusting ``ca_pem`` (when given) instead of the system's CAs."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if not ca_pem:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise BadCertificate(f"not a PEM CA certificate: {exc}") from None


def warn_unverified(host: str) -> None:
    log.warning(
        "TLS certificate of %s is NOT verified (account set --smtp-no-verify-tls): "
        "anyone on the path can read the mail and the password; use --smtp-ca-file instead",
        host,
    )
