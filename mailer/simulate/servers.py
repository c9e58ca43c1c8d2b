"""The forecast's throwaway PostgreSQL and Redis, started in the background at once.

A throwaway cluster costs about a second before the forecast can seed it (``initdb``, the
server's start, the migrations), nearly all of it in child processes and round trips. Started
in threads before the simulator's modules load and while Temporal's time-skipping server
starts, that second overlaps work the forecast does anyway instead of coming before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from mailer.stack.throwaway import postgres_cluster, redis_server

T = TypeVar("T")


@dataclass(frozen=True)
class ServerUrls:
    """Where the forecast's servers listen: a fresh migrated database and a Redis."""

    database_url: str
    redis_url: str


def _entered(manager: AbstractContextManager[T]) -> tuple[T, ExitStack]:
    """``manager`` entered, with the stack that leaves it (in the thread that entered it)."""
    with ExitStack() as stack:
        value = stack.enter_context(manager)
        return value, stack.pop_all()


def _database() -> tuple[str, ExitStack]:
    # In memory where the machine allows it, and the cluster's migrated template is the
    # forecast's one database: of the 1.6 s this start took, copying the cached cluster to
    # the disk was 0.8 s and copying the template into a new database 0.26 s, all of it
    # before the forecast could seed.
    cluster, stack = _entered(postgres_cluster(in_memory=True))
    return cluster.template_url(), stack


def _redis() -> tuple[str, ExitStack]:
    server, stack = _entered(redis_server())
    return server.url, stack


class ThrowawayServers:
    """``with ThrowawayServers() as servers:`` starts both at once in the background;
    ``await servers.ready()`` waits for them; leaving the block stops and removes both
    (waiting for a start still under way first, so nothing is left behind)."""

    def __init__(self) -> None:
        self.started_at = time.perf_counter()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mailer-simulate")
        self._database: Future[tuple[str, ExitStack]] = self._pool.submit(_database)
        self._redis: Future[tuple[str, ExitStack]] = self._pool.submit(_redis)

    async def ready(self) -> ServerUrls:
        """Both servers' addresses once they accept connections; a server that failed to
        start raises its error here."""
        database, _ = await asyncio.wrap_future(self._database)
        redis, _ = await asyncio.wrap_future(self._redis)
        return ServerUrls(database_url=database, redis_url=redis)

    def close(self) -> None:
        """Stop and remove whatever started (a failed start has nothing to remove)."""
        self._pool.shutdown(wait=True)
        for started in (self._redis, self._database):
            if started.exception() is None:
                _, stack = started.result()
                with contextlib.suppress(Exception):  # best effort: the forecast is done
                    stack.close()

    def __enter__(self) -> ThrowawayServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
