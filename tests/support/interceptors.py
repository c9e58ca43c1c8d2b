"""Worker interceptors that let a test see what the worker was asked."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    HandleQueryInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)


class QueriesSeen(Interceptor):
    """The worker's side of every query a workflow answers, by query name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        seen = self.names

        class Counting(WorkflowInboundInterceptor):
            async def handle_query(self, input: HandleQueryInput) -> Any:
                seen.append(input.query)
                return await super().handle_query(input)

        return Counting


class ActivityGate(Interceptor):
    """Holds every attempt of one (non-local) activity until :meth:`open`; ``held`` is set
    once one waits. What a task queue's backlog does to a campaign, made to last."""

    def __init__(self, activity_type: str) -> None:
        self.activity_type = activity_type
        self.held = asyncio.Event()
        self._opened = asyncio.Event()

    def open(self) -> None:
        self._opened.set()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        gate = self

        class Holding(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                info = activity.info()
                if info.activity_type == gate.activity_type and not info.is_local:
                    gate.held.set()
                    await gate._opened.wait()
                return await super().execute_activity(input)

        return Holding(next)
