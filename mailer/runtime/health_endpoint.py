"""The worker's health endpoint (``MAILER_HEALTH_PORT``): what compose, Kubernetes and a
load balancer ask.

- ``GET /livez`` — 200 while the process serves (its event loop answers), from the start:
  a worker still waiting for Temporal is alive, not stuck (a startup probe must not kill it).
- ``GET /readyz`` — 200 once Temporal lists this worker among the task queue's pollers
  (workflow and activity), 503 with the reason before that (waiting for Temporal, not
  polling yet), and after a shutdown began.

A deliberately tiny HTTP/1.0 responder on the worker's own event loop: no framework that
would install its own signal handlers beside the worker's graceful SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client
from temporalio.service import RPCError

from mailer.doctor.checks import live_pollers
from mailer.doctor.probes import task_queue_pollers

CACHE_SECONDS = 5.0  # readiness is asked often; the task queue is described at most this often


@dataclass
class Readiness:
    ready: bool
    reason: str


class WorkerHealth:
    def __init__(self, namespace: str, task_queue: str, temporal_address: str) -> None:
        self.client: Client | None = None  # set once connected (:meth:`connected`)
        self.identity = ""
        self.namespace = namespace
        self.task_queue = task_queue
        self.temporal_address = temporal_address
        self.running = False  # set while the worker runs (cleared when shutdown begins)
        self._cached: tuple[float, Readiness] | None = None
        self._server: asyncio.Server | None = None

    def connected(self, client: Client) -> None:
        """Temporal answered: readiness is now asked of it."""
        self.client = client
        self.identity = client.identity

    async def readiness(self) -> Readiness:
        if self.client is None:
            return Readiness(False, f"waiting for Temporal at {self.temporal_address}")
        if not self.running:
            return Readiness(False, "the worker is not running (starting or shutting down)")
        if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        found = await self._polled()
        self._cached = (time.monotonic(), found)
        return found

    async def _polled(self) -> Readiness:
        assert self.client is not None  # readiness() asks only once connected
        now = datetime.now(UTC)
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        for kind in kinds:
            try:
                pollers = await task_queue_pollers(
                    self.client, self.namespace, self.task_queue, kind
                )
            except (RPCError, RuntimeError) as exc:
                return Readiness(False, f"cannot ask Temporal: {exc}")
            if not any(p.identity == self.identity for p in live_pollers(pollers, now)):
                return Readiness(
                    False, f"{self.identity} is not polling task queue {self.task_queue!r} yet"
                )
        return Readiness(True, f"{self.identity} polls task queue {self.task_queue!r}")

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.decode("latin-1").split(" ")[1] if request.count(b" ") >= 2 else ""
            body: dict[str, object]
            if path == "/livez":
                status, body = 200, {"alive": True}
            elif path == "/readyz":
                found = await self.readiness()
                status, body = (
                    (200 if found.ready else 503),
                    {
                        "ready": found.ready,
                        "reason": found.reason,
                    },
                )
            else:
                status, body = 404, {"error": "try /livez or /readyz"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
