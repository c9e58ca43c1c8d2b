"""The unsubscribe service (Starlette): ``/u/TOKEN`` for every message's List-Unsubscribe.

- ``POST /u/TOKEN`` — RFC 8058 one-click, as Gmail and Yahoo send it (body
  ``List-Unsubscribe=One-Click``), and the confirmation page's button: 200, no login, no
  second step, idempotent.
- ``GET /u/TOKEN`` — a page with one button; a GET alone never unsubscribes (mail security
  scanners follow links).
- A malformed or forged token: 400 and a page saying so; nothing is read or written.
- ``GET /healthz`` — 200 when the database answers.

With ``MAILER_INBOUND_PORT`` set, the same process receives mail for the ``mailto:``
unsubscribes, bounces and complaints (:mod:`mailer.inbound`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from db.engine import session_scope
from mailer.core.settings import Settings
from mailer.inbound.receiver import receiving
from mailer.mail.unsubscribe_tokens import BadToken, Target, verify
from mailer.operations.unsubscribes import Subscriber, look_up, unsubscribe
from mailer.web import pages

T = TypeVar("T")
# Responses must not be cached or leak the token to other sites.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def create_app(settings: Settings, inbound: socket.socket | None = None) -> Starlette:
    """The app; ``inbound`` is the mail receiver's socket if already bound (``mailer web``)."""
    service = UnsubscribeService(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with receiving(settings, inbound):
            yield

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/u/{token}", service.show, methods=["GET"]),
            Route("/u/{token}", service.one_click, methods=["POST"]),
            Route("/healthz", service.healthz, methods=["GET"]),
        ],
    )


class UnsubscribeService:
    """The pages behind the links in every message: confirm, one-click (RFC 8058), health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def show(self, request: Request) -> Response:
        target = self._target_of(request)
        if isinstance(target, Response):
            return target
        found: Subscriber = await self._in_session(look_up, target)
        if found.suppressed_as:
            return HTMLResponse(pages.already(found.masked), headers=HEADERS)
        return HTMLResponse(pages.confirm(found.masked, request.url.path), headers=HEADERS)

    async def one_click(self, request: Request) -> Response:
        target = self._target_of(request)
        if isinstance(target, Response):
            return target
        found: Subscriber = await self._in_session(unsubscribe, target)
        return HTMLResponse(pages.done(found.masked), headers=HEADERS)

    async def healthz(self, request: Request) -> Response:
        def ping() -> None:
            with session_scope(self.settings.sqlalchemy_url) as session:
                session.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except SQLAlchemyError as exc:
            return PlainTextResponse(f"database unreachable: {type(exc).__name__}", 503)
        return PlainTextResponse("ok")

    def _target_of(self, request: Request) -> Target | Response:
        try:
            return verify(self.settings.unsubscribe_key, request.path_params["token"])
        except BadToken as exc:
            return HTMLResponse(pages.bad_link(str(exc)), status_code=400, headers=HEADERS)

    async def _in_session(self, work: Callable[..., T], target: Target) -> T:
        def run() -> T:
            with session_scope(self.settings.sqlalchemy_url) as session:
                return work(session, target)

        return await run_in_threadpool(run)
