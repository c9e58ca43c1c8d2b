"""What a message is made from: the account, the campaign and the recipient as plain values
(read from the ledger by the activities, built by hand by the tools that rehearse)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AccountView:
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: str
    smtp_tls: str
    from_email: str
    from_name: str
    per_user_daily_limit: int
    smtp_ca_pem: str = ""
    smtp_verify_tls: bool = True

    @classmethod
    def without_login(cls, host: str, port: int, from_email: str) -> AccountView:
        """A server that takes mail with no TLS and no login (the stack's SMTP sink, a relay
        on a trusted network), no daily limit."""
        return cls(
            smtp_host=host,
            smtp_port=port,
            smtp_username="",
            smtp_password="",
            smtp_tls="none",
            from_email=from_email,
            from_name="",
            per_user_daily_limit=0,
        )


@dataclass(frozen=True)
class RecipientView:
    id: int
    email: str
    name: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class CampaignView:
    id: uuid.UUID
    created_by_id: int | None
    subject: str
    html_body: str
    text_body: str
    from_email: str
    from_name: str
