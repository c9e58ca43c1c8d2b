"""The shared hourly rate window and the per-user throttles, in Redis (seed-compatible keys).

Tokens are reserved atomically (Lua) and unused ones returned. On any Redis error the
limiter **fails open**, as the seed does: sending goes on, and ``Error reserving rate limit
token`` is logged at ERROR (the seed's alert matches that text). Tokens handed out while
failing open were never counted, so they are never "returned"; and the first reservation
after an outage raises the window to what the send log says went out this hour, so the
sends made meanwhile count against it (Redis may come back with its old number from disk).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import redis
import redis.asyncio as aioredis

from activities import metrics
from mailer.mail.pacing import DomainGroup, DomainPacing, minute_label
from workflows.working_hours import hour_label, rate_window_key

log = logging.getLogger("mailer.ratelimit")

#: The Celery engine's global lock (the playbook: TTL 600 s). While it is held the old engine
#: may be sending, so mailer sends nothing: never two engines on one campaign.
OLD_ENGINE_LOCK = "crm:mailer:send_pending_emails:lock"

RATE_WINDOW_TTL_SECONDS = 2 * 60 * 60
THROTTLE_TTL_SECONDS = 2 * 60 * 60
THROTTLE_PREFIX = "crm:mailer:throttle:"

# ARGV: limit, wanted, ttl, seed. A missing window (Redis restarted, or its first use this
# hour) is seeded with what the send log says went out in that hour; with no seed given
# yet, {-1, 0} asks the caller for one.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[4] == '' then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if grant <= 0 then return {0, 0} end
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {grant, tonumber(ARGV[1]) - used - grant}
"""

# ARGV: seed, ttl. Never lowers the window: other workers' reservations are in it too.
_RAISE_TO = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > used then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return used
"""

_RELEASE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(tonumber(ARGV[1]), used)
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
"""


# Short timeouts: a Redis outage must not stall sending, only open the limiter.
REDIS_TIMEOUT_SECONDS = 1.0
DOMAIN_WINDOW_PREFIX = "crm:mailer:rate:domain:"
DOMAIN_WINDOW_TTL = 120  # seconds: a minute's window, and a minute's grace

# ARGV: limit, ttl. One token if the window has one left: 1, else 0.
_TAKE_ONE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def domain_window_key(group: DomainGroup, now: datetime) -> str:
    """``crm:mailer:rate:domain:<group>:YYYY-MM-DDTHH:MM`` (UTC minute)."""
    return f"{DOMAIN_WINDOW_PREFIX}{group.name}:{minute_label(now)}"


@dataclass(frozen=True)
class Reservation:
    granted: int
    window_full: bool  # nothing left in this hour's window after this reservation
    counted: bool = True  # False when failing open: Redis never counted these tokens

    def returnable(self, unused: int) -> int:
        """How many of ``unused`` tokens go back to the window."""
        return min(unused, self.granted) if self.counted else 0


class RateLimiter:
    """Reserve and return tokens of the hourly window shared by all campaigns."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: aioredis.Redis | None = None
        # Set while failing open: the window misses our sends until it is raised again.
        self._window_behind = False

    def redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
        return self._client

    async def reserve(
        self,
        now: datetime,
        timezone: str,
        limit: int,
        wanted: int,
        *,
        sent_in_hour: Callable[[], Awaitable[int]],
    ) -> Reservation:
        """Up to ``wanted`` tokens of the window containing ``now`` (all of them on error).

        ``sent_in_hour`` counts the hour's sends from the send log: it seeds a window Redis
        does not have (asked only then), so a Redis restart never hands out a fresh hour.
        """
        if wanted <= 0:
            return Reservation(0, window_full=False)
        key = rate_window_key(now, timezone)
        try:
            client = self.redis()
            args = (limit, wanted, RATE_WINDOW_TTL_SECONDS)
            if self._window_behind:
                await self._catch_up(client, key, await sent_in_hour())
            granted, left = await client.eval(_RESERVE, 1, key, *args, "")
            if int(granted) < 0:
                seed = await sent_in_hour()
                log.info("rate window %s was missing: seeded with %d from the send log", key, seed)
                granted, left = await client.eval(_RESERVE, 1, key, *args, seed)
            return Reservation(int(granted), window_full=int(left) <= 0)
        except (redis.RedisError, OSError) as exc:
            log.error("Error reserving rate limit token: %s (key %s); failing open", exc, key)
            metrics.redis_error()
            self._window_behind = True
            await self._reset()
            return Reservation(wanted, window_full=False, counted=False)

    async def _catch_up(self, client: aioredis.Redis, key: str, sent: int) -> None:
        """After failing open: raise the window to the send log's count for the hour."""
        used = await client.eval(_RAISE_TO, 1, key, sent, RATE_WINDOW_TTL_SECONDS)
        self._window_behind = False
        log.info("rate window %s caught up after a Redis outage: %d used", key, int(used))

    async def release(self, now: datetime, timezone: str, unused: int) -> None:
        """Give back tokens reserved but not used (best effort)."""
        if unused <= 0:
            return
        key = rate_window_key(now, timezone)
        try:
            await self.redis().eval(_RELEASE, 1, key, unused)
        except (redis.RedisError, OSError) as exc:
            log.error("Error returning rate limit tokens: %s (key %s)", exc, key)
            metrics.redis_error()
            await self._reset()

    # --- per-domain pacing (mailer.mail.pacing) ------------------------------------------

    async def take_domain_token(self, now: datetime, group: DomainGroup) -> bool:
        """One message to ``group`` in the minute of ``now``: False when its window is full.
        Fails open (True) when Redis cannot be reached, like the hourly window."""
        key = domain_window_key(group, now)
        try:
            return bool(
                await self.redis().eval(_TAKE_ONE, 1, key, group.per_minute, DOMAIN_WINDOW_TTL)
            )
        except (redis.RedisError, OSError) as exc:
            log.error("Error reserving rate limit token: %s (key %s); failing open", exc, key)
            metrics.redis_error()
            await self._reset()
            return True

    async def domain_usage(self, now: datetime, pacing: DomainPacing) -> dict[str, int]:
        """Messages counted this minute per group name (empty if Redis cannot say)."""
        if not pacing:
            return {}
        keys = [domain_window_key(group, now) for group in pacing.groups]
        try:
            values = await self.redis().mget(keys)
        except (redis.RedisError, OSError) as exc:
            log.error("Error reading domain windows: %s", exc)
            metrics.redis_error()
            await self._reset()
            return {}
        return {
            group.name: int(value or 0) for group, value in zip(pacing.groups, values, strict=True)
        }

    async def full_groups(self, now: datetime, pacing: DomainPacing) -> set[str]:
        """Names of the groups whose window for the minute of ``now`` is used up."""
        used = await self.domain_usage(now, pacing)
        return {g.name for g in pacing.groups if used.get(g.name, 0) >= g.per_minute}

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await client.aclose()

    async def close(self) -> None:
        await self._reset()


def throttle_key(kind: str, user_id: int, now: datetime, timezone: str) -> str:
    """``crm:mailer:throttle:<kind>:<user>:YYYY-MM-DD:HH`` for the clock hour of ``now``."""
    return f"{THROTTLE_PREFIX}{kind}:{user_id}:{hour_label(now, timezone)}"


def take_throttle(url: str, key: str, limit: int) -> tuple[bool, int]:
    """Count one use under ``key``; ``(allowed, uses this hour)``. Fails open on errors."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        try:
            uses = int(client.incr(key))
            if uses == 1:
                client.expire(key, THROTTLE_TTL_SECONDS)
            if uses > limit:
                client.decr(key)
                return False, uses - 1
            return True, uses
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        log.error("Error reserving rate limit token: %s (throttle %s); failing open", exc, key)
        metrics.redis_error()
        return True, 0


def domain_usage_now(url: str, pacing: DomainPacing, now: datetime) -> dict[str, int] | None:
    """This minute's count per group, for operators (``None`` if Redis cannot say)."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        try:
            values = client.mget([domain_window_key(group, now) for group in pacing.groups])
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return None
    return {g.name: int(v or 0) for g, v in zip(pacing.groups, values, strict=True)}


class OldEngineWatch:
    """Whether the old engine holds its lock, said once per worker when it starts and once
    when it ends (not once per batch). Redis unreachable: not held (the limiter fails open
    the same way, and says so itself)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._held = False

    async def holds_lock(self) -> bool:
        try:
            held = bool(await self._limiter.redis().exists(OLD_ENGINE_LOCK))
        except (redis.RedisError, OSError):
            return False
        if held and not self._held:
            log.warning(
                "the old engine holds %s: sending nothing until it is released (docs/cutover.md)",
                OLD_ENGINE_LOCK,
            )
        elif self._held and not held:
            log.info("%s released: sending", OLD_ENGINE_LOCK)
        self._held = held
        return held
