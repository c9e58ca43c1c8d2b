"""Per-domain pacing: ``MAILER_DOMAIN_RATE_PER_MINUTE`` parsed, and which group an address
belongs to (pure; the windows themselves live in Redis, :mod:`activities.ratelimit`).

mail.ru and Yandex throttle a sender that pushes too fast to their mailboxes. A group of
domains served by one provider shares one per-minute window::

    MAILER_DOMAIN_RATE_PER_MINUTE=mail.ru,bk.ru,inbox.ru,list.ru=20,yandex.ru,ya.ru=20,gmail.com=60

Entries are comma-separated; domains before an ``=N`` form one group (named after its first
domain) with N messages per minute. Domains in no group are not paced.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class DomainGroup:
    name: str  # its first domain: the Redis key and what operators see
    domains: frozenset[str]
    per_minute: int


@dataclass(frozen=True)
class DomainPacing:
    groups: tuple[DomainGroup, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.groups)

    def group_of(self, address: str) -> DomainGroup | None:
        domain = address.rpartition("@")[2].lower()
        for group in self.groups:
            if domain in group.domains:
                return group
        return None

    def domains_of(self, names: set[str]) -> list[str]:
        return sorted(d for g in self.groups if g.name in names for d in g.domains)


@functools.lru_cache(maxsize=16)
def parse_domain_rates(text: str) -> DomainPacing:
    """The groups of ``text``; raises ValueError saying what is wrong (one line)."""
    groups: list[DomainGroup] = []
    pending: list[str] = []
    seen: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        domain, equals, rate = entry.partition("=")
        domain = domain.strip()
        if not domain or "@" in domain or " " in domain or "." not in domain:
            raise ValueError(f"{raw.strip()!r} is not a domain (write mail.ru=20)")
        if domain in seen:
            raise ValueError(f"{domain} is in two groups")
        seen.add(domain)
        pending.append(domain)
        if not equals:
            continue
        try:
            per_minute = int(rate)
        except ValueError:
            raise ValueError(f"{entry!r}: {rate.strip()!r} is not a whole number") from None
        if per_minute < 1:
            raise ValueError(f"{entry!r}: the rate must be at least 1 per minute")
        groups.append(DomainGroup(pending[0], frozenset(pending), per_minute))
        pending = []
    if pending:
        raise ValueError(f"{', '.join(pending)}: no rate (end the group with =N)")
    return DomainPacing(tuple(groups))


def minute_bounds(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC minute containing ``now``: one pacing window."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    return start, start + timedelta(minutes=1)


def minute_label(now: datetime) -> str:
    return minute_bounds(now)[0].strftime("%Y-%m-%dT%H:%M")
