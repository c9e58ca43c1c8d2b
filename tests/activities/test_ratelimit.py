"""The hourly window across a Redis outage: fail open, never return uncounted tokens, and
catch the window up from the send log when Redis is back."""

from __future__ import annotations

from datetime import UTC, datetime

import redis as redis_lib

from activities.ratelimit import RateLimiter
from mailer.stack.servers import free_port, redis_server
from workflows.working_hours import rate_window_key

TZ = "Europe/Moscow"
NOW = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


async def test_tokens_handed_out_while_failing_open_are_caught_up_afterwards() -> None:
    port = free_port()
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
    key = rate_window_key(NOW, TZ)
    send_log = {"sent": 10}

    async def sent_in_hour() -> int:
        return send_log["sent"]

    with redis_server(port):
        first = await limiter.reserve(NOW, TZ, 100, 10, sent_in_hour=sent_in_hour)
        assert (first.granted, first.counted) == (10, True)
        # The first reservation seeded the window from the send log (10) and added its 10.
        assert int(redis_lib.Redis(port=port).get(key) or 0) == 20
    # Redis is down: the limiter fails open, and those tokens were never counted.
    blind = await limiter.reserve(NOW, TZ, 100, 30, sent_in_hour=sent_in_hour)
    assert (blind.granted, blind.counted) == (30, False)
    assert blind.returnable(5) == 0 and first.returnable(5) == 5
    send_log["sent"] = 60  # what went out meanwhile, recorded in the send log
    # Redis is back with its old number (an append-only file keeps it across restarts).
    with redis_server(port):
        redis_lib.Redis(port=port).set(key, 20)
        after = await limiter.reserve(NOW, TZ, 100, 50, sent_in_hour=sent_in_hour)
        assert after.granted == 40  # 60 used by the send log's count, not 20
        assert int(redis_lib.Redis(port=port).get(key) or 0) == 100
    await limiter.close()
