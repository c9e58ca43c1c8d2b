"""The event loop the worker and the simulator run on (mailer.core.event_loop)."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest
import uvloop

from mailer.core.errors import ConfigError
from mailer.core.event_loop import run
from mailer.core.settings import load_settings


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default_and_asyncio_the_way_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILER_EVENT_LOOP", raising=False)
    default = load_settings().event_loop
    assert default == "uvloop"
    assert issubclass(run(_loop_type(), default), uvloop.Loop)

    monkeypatch.setenv("MAILER_EVENT_LOOP", "asyncio")
    chosen = load_settings().event_loop
    loop_type = run(_loop_type(), chosen)
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "MAILER_EVENT_LOOP" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_without_uvloop_installed_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    coroutine = _loop_type()
    with pytest.raises(ConfigError, match="set MAILER_EVENT_LOOP=asyncio"):
        run(coroutine, "uvloop")
    # Closed, not left to warn "coroutine was never awaited".
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


async def test_the_suite_runs_on_the_loop_the_worker_would() -> None:
    on_uvloop = isinstance(asyncio.get_running_loop(), uvloop.Loop)
    assert on_uvloop == (load_settings().event_loop == "uvloop")
