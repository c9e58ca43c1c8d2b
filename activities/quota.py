"""The smtp.bz quota sync: ``GET {api}/user`` with ``Authorization: <key>``.

On success ``emails_available ← quota`` and ``emails_limit ← tarif_quota``; on any error the
old numbers stay and ``sync_error`` says what went wrong (the playbook checks it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import httpx

log = logging.getLogger("mailer.quota")


@dataclass(frozen=True)
class ProviderQuota:
    quota: int
    tarif_quota: int
    hlimit: int
    hsent: int


class QuotaSyncError(Exception):
    """The provider's quota could not be read; the message goes to ``sync_error``."""


async def fetch_quota(api_url: str, api_key: str, *, timeout: float = 10.0) -> ProviderQuota:
    if not api_key:
        raise QuotaSyncError("no smtp_bz_api_key configured (mailer account set --smtp-bz-api-key)")
    url = api_url.rstrip("/") + "/user"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url, headers={"Authorization": api_key})
    except httpx.HTTPError as exc:
        raise QuotaSyncError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise QuotaSyncError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
        return ProviderQuota(
            quota=int(body["quota"]),
            tarif_quota=int(body.get("tarif_quota", 0)),
            hlimit=int(body.get("hlimit", 0)),
            hsent=int(body.get("hsent", 0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise QuotaSyncError(f"{url} answered something unexpected: {exc!r}") from exc


def log_sync(now: datetime, available: int, error: str) -> None:
    if error:
        log.warning("quota sync failed at %s: %s", now.isoformat(), error)
    else:
        log.info("quota synced at %s: %d emails available", now.isoformat(), available)
