"""Any Temporal cluster: mailer reaches a TLS frontend that requires a client certificate
(mTLS, a private CA made here) — a TLS-terminating proxy in front of the dev server, since
the bundled CLI's dev server speaks plaintext only. Worker, CLI and doctor connect alike."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from mailer.core.settings import load_settings
from mailer.core.temporal_client import connect
from mailer.runtime.worker import build_worker
from tests.support.harness import Harness, address, cli, hours_excluding_now

SERVER_NAME = "temporal.mailer.test"


@contextlib.asynccontextmanager
async def tls_proxy(upstream: str, ca: trustme.CA) -> AsyncIterator[int]:
    """TLS (h2, client certificate required) on a free port, bytes passed to ``upstream``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER_NAME).configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


@dataclass
class Pki:
    ca: trustme.CA
    files: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.files[name]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    client = ca.issue_cert("mailer-worker")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return Pki(ca, {name: str(path) for name, path in files.items()})


async def test_worker_cli_and_doctor_over_mtls(dev: Harness, pki: Pki) -> None:
    async with tls_proxy(address(dev.client), pki.ca) as port:
        tls_env = {
            "MAILER_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "MAILER_TEMPORAL_TLS_CA": pki["ca"],
            "MAILER_TEMPORAL_TLS_CERT": pki["cert"],
            "MAILER_TEMPORAL_TLS_KEY": pki["key"],
            "MAILER_TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
        }
        settings = dev.settings.model_copy(
            update={
                "temporal_address": f"127.0.0.1:{port}",
                "temporal_tls_ca": Path(pki["ca"]),
                "temporal_tls_cert": Path(pki["cert"]),
                "temporal_tls_key": Path(pki["key"]),
                "temporal_tls_server_name": SERVER_NAME,
            }
        )
        client = await connect(settings)  # the worker's own connection, through TLS
        start, end = hours_excluding_now()
        worker_settings = settings.model_copy(
            update={"working_hours_start": start, "working_hours_end": end}
        )
        campaign = dev.ready_campaign(3)
        async with build_worker(client, worker_settings, task_queue=dev.task_queue):
            started = await cli(dev, "start", campaign, env_overrides=tls_env)
            assert started.returncode == 0, started.stderr
            assert "deferred (outside_hours" in started.stdout
            doctor = await cli(dev, "doctor", env_overrides=tls_env)
            assert f"Temporal    127.0.0.1:{port} (namespace default): reachable" in doctor.stdout
            assert "OK    workers" in doctor.stdout

            # The frontend requires a client certificate: without one, a clear refusal.
            no_cert = {k: v for k, v in tls_env.items() if "CERT" not in k and "KEY" not in k}
            refused = await cli(dev, "doctor", "--json", env_overrides=no_cert)
            assert refused.returncode == 2
            assert f"Temporal at 127.0.0.1:{port} unreachable" in refused.stdout


async def test_a_wrong_tls_setting_is_one_line_naming_the_variable(
    dev: Harness, pki: Pki, tmp_path: Path
) -> None:
    missing = await cli(dev, "list", env_overrides={"MAILER_TEMPORAL_TLS_CA": "/nonexistent.pem"})
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith(
        "error: MAILER_TEMPORAL_TLS_CA: cannot read /nonexistent.pem: No such file or directory"
    )
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    garbage = await cli(dev, "list", env_overrides={"MAILER_TEMPORAL_TLS_CA": str(not_pem)})
    assert garbage.stderr.strip().startswith(
        f"error: MAILER_TEMPORAL_TLS_CA: {not_pem} is not a PEM file"
    )
    half = await cli(dev, "list", env_overrides={"MAILER_TEMPORAL_TLS_CERT": pki["cert"]})
    assert half.returncode == 2
    assert half.stderr.strip() == (
        "error: MAILER_TEMPORAL_TLS_KEY: required with MAILER_TEMPORAL_TLS_CERT "
        "(a client certificate and its key)"
    )


def test_an_api_key_turns_tls_on() -> None:
    from mailer.core.temporal_client import tls_config

    settings = load_settings(temporal_api_key="key-from-cloud")
    assert tls_config(settings) is True
    assert tls_config(load_settings()) is False
