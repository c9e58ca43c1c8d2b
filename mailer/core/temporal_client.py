"""Connecting to Temporal the same way everywhere (worker, CLI, doctor, schedules):
plaintext for the embedded stack, TLS with a private CA or mTLS for a self-hosted cluster,
an API key for Temporal Cloud (MAILER_TEMPORAL_* settings)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from mailer.core.settings import Settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    """What ``Client.connect`` takes as ``tls``: False, True (system CAs) or a TLSConfig."""
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    api_key = settings.temporal_api_key.get_secret_value()
    if not any(files) and not settings.temporal_tls_server_name:
        return bool(settings.temporal_tls or api_key)
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes()
        if settings.temporal_tls_ca
        else None,
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes()
        if settings.temporal_tls_key
        else None,
        domain=settings.temporal_tls_server_name or None,
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client of MAILER_TEMPORAL_ADDRESS / _NAMESPACE with its TLS and API key."""
    api_key = settings.temporal_api_key.get_secret_value()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=api_key or None,
        runtime=runtime,
    )
