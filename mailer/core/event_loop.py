"""The event loop the long-running processes run on: uvloop, or asyncio's own on request.

The worker and ``mailer simulate`` spend most of their CPU in the event loop's own
machinery around each SMTP reply, database round trip and Temporal poll (selecting,
scheduling callbacks, transports). uvloop does that work in C on libuv: 0.89 × the CPU of
a 10,000-recipient forecast and 0.92 × its wall time, 3–11 % less CPU per email on the
loopback bench (``docs/benchmarks.md``). ``MAILER_EVENT_LOOP=asyncio`` is the way back
should a library ever misbehave on it. The test suite runs on uvloop too
(``tests/conftest.py``), so what ships is what is tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from mailer.core.errors import ConfigError

EventLoopKind = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def loop_factory(kind: EventLoopKind) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new event loop of ``kind``."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # a platform without its wheel (uvloop has none for Windows)
        raise ConfigError(
            "MAILER_EVENT_LOOP=uvloop, but uvloop is not installed: "
            "install it, or set MAILER_EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoopKind) -> T:
    """``asyncio.run(main)`` on a new loop of ``kind``."""
    try:
        factory = loop_factory(kind)
    except ConfigError:
        main.close()  # so that Python does not warn it was never awaited
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
