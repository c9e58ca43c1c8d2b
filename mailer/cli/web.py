"""``mailer web``: serve the one-click unsubscribe service (see :mod:`mailer.web.app`)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from db.engine import size_pools
from mailer.cli.support import fail, reports_errors, settings

WEB_DATABASE_CONNECTIONS = 8

app = typer.Typer()


@app.command()
@reports_errors
def web(
    host: Annotated[str | None, typer.Option(help="Default: MAILER_WEB_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: MAILER_WEB_PORT.")] = None,
    inbound_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="SMTP port for unsubscribes, bounces, complaints (0 = off). "
            "Default: MAILER_INBOUND_PORT.",
        ),
    ] = None,
) -> None:
    """Serve /u/TOKEN, the List-Unsubscribe links of every message, until stopped; with an
    inbound port, also receive the mail that comes back (mailto: unsubscribes, bounces,
    complaints)."""
    # Imported here: the web server and the SMTP receiver are this command's alone (every
    # `mailer` command would pay for them at start).
    import uvicorn

    from mailer.inbound.receiver import bind
    from mailer.web.app import create_app
    from mailer.web.slow_clients import HeaderDeadlineProtocol

    current = settings()
    if inbound_port is not None:
        current = current.model_copy(update={"inbound_port": inbound_port})
    # What was unsubscribed or received, by campaign id (never an address or a token).
    logging.basicConfig(
        level=current.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not current.unsubscribe_key:
        raise fail("MAILER_UNSUBSCRIBE_SECRET is not set: no link could be checked", 2)
    # A click or a report holds one connection for a moment: 8 serve the receiver's 4
    # parses and the links at once, and keep a pod's share of max_connections known
    # (deploy/k8s/worker.yaml sums them).
    size_pools(WEB_DATABASE_CONNECTIONS)
    uvicorn.run(
        create_app(current, bind(current)),
        host=host or current.web_host,
        port=port or current.web_port,
        log_level=current.log_level.lower(),
        # Off: the access log would hold every token (each one unsubscribes someone).
        access_log=False,
        proxy_headers=True,
        # Faces the internet: idle and slow connections are cut, connections capped (503
        # past it), no server banner. TLS and rate limiting belong in front (docs/security.md).
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
        limit_concurrency=200,
        h11_max_incomplete_event_size=16 * 1024,
        server_header=False,
        http=HeaderDeadlineProtocol,  # and a request's headers must arrive within 10 s
        # asyncio's own loop, whatever MAILER_EVENT_LOOP says (uvicorn would pick uvloop,
        # the worker's loop, now that it is installed): the receiver's STARTTLS is aiosmtpd
        # wrapping the transport in asyncio's SSLProtocol, proven on this loop, and this
        # process's load is a click or a report at a time, not worth a change.
        loop="asyncio",
    )
