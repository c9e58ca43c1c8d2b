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
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
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
# Responses must not be cached, leak the token to other sites, be framed (clickjacking the
# button) or run anything but our own inline style and form.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# RFC 8058: the one-click POST's body (the confirmation page's form sends the same).
ONE_CLICK_FIELD = ("List-Unsubscribe", "One-Click")
MAX_FORM_BYTES = 1024


def create_app(settings: Settings, inbound: socket.socket | None = None) -> Starlette:
    """The app; ``inbound`` is the mail receiver's socket if already bound (``mailer web``)."""
    service = UnsubscribeService(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with receiving(settings, inbound):
            yield

    app = Starlette(
        lifespan=lifespan,
        routes=[
            # One route for both, so a 405's Allow names GET and POST.
            Route("/u/{token}", service.link, methods=["GET", "POST"]),
            Route("/healthz", service.healthz, methods=["GET"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(settings))],
    )
    # `/u/TOKEN/` would redirect to whatever Host the request named: a 404 instead.
    app.router.redirect_slashes = False
    return app


def trusted_hosts(settings: Settings) -> list[str]:
    """The public URL's host (links point there) and loopback (health checks, proxies)."""
    public = urlsplit(settings.unsubscribe_base_url).hostname or ""
    return sorted({public, "127.0.0.1", "localhost", "[::1]"} - {""})


async def _is_one_click(request: Request) -> bool:
    """Whether the POST's body carries ``List-Unsubscribe=One-Click`` (read at most
    :data:`MAX_FORM_BYTES`; multipart, as some clients send it, included)."""
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return False
        chunks.append(chunk)
    body = b"".join(chunks).decode("utf-8", "replace")
    if "multipart/form-data" in request.headers.get("content-type", ""):
        return 'name="List-Unsubscribe"' in body and "One-Click" in body
    return ONE_CLICK_FIELD in parse_qsl(body)


class UnsubscribeService:
    """The pages behind the links in every message: confirm, one-click (RFC 8058), health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def link(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.one_click(request)
        return await self.show(request)

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
        if not await _is_one_click(request):
            return HTMLResponse(
                pages.bad_link("not an RFC 8058 one-click request (List-Unsubscribe=One-Click)"),
                status_code=400,
                headers=HEADERS,
            )
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
