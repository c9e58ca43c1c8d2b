"""A real DNS server over UDP for the receiver's DKIM key lookups, and keys to sign with.

The feedback loops' own zones (mail.ru's, Yahoo's) are not reachable from the test
machines, so this server answers TXT queries for the names a test publishes, NXDOMAIN for
any other, and remembers every name it was asked.
"""

from __future__ import annotations

import base64
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dkim
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class SigningKey:
    """An RSA key pair as a DKIM signer holds it (private PEM) and publishes it (TXT)."""

    private_pem: bytes
    txt: str

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private_pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode()}")

    def sign(self, raw: bytes, domain: str, selector: str = "fbl") -> bytes:
        """``raw`` (CRLF line ends) with this key's DKIM-Signature of ``domain`` on top."""
        signature = dkim.sign(
            raw,
            selector.encode(),
            domain.encode(),
            self.private_pem,
            include_headers=[b"from", b"to", b"subject", b"content-type"],
        )
        return bytes(signature) + raw


@dataclass
class Zone:
    """TXT records served, and the names asked for."""

    port: int
    records: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def publish(self, domain: str, key: SigningKey, selector: str = "fbl") -> None:
        self.records[f"{selector}._domainkey.{domain}."] = key.txt

    @property
    def nameserver(self) -> str:
        """The value of MAILER_DKIM_NAMESERVERS pointing at this server."""
        return f"127.0.0.1:{self.port}"


def _answer(zone: Zone, wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text().lower()
    zone.asked.append(name)
    text = zone.records.get(name)
    if text is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype == dns.rdatatype.TXT:
        # A TXT record's strings are at most 255 bytes: a 2048-bit key takes two.
        chunks = " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "TXT", chunks))
    return response.to_wire()


@contextmanager
def serving_zone() -> Iterator[Zone]:
    """A DNS server on a free UDP port of 127.0.0.1 until the block ends."""
    zone = Zone(port=0)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            wire, sock = self.request
            sock.sendto(_answer(zone, wire), self.client_address)

    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
    zone.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield zone
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
