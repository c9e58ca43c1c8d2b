"""`make up` / `make down`: the embedded stack, for real, in a temporary data directory."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import psutil
import psycopg
import pytest
import redis as redis_lib
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from mailer.core.errors import StackError
from mailer.core.settings import load_settings
from mailer.stack import embedded
from mailer.stack.config import StackSettings
from mailer.stack.throwaway import stack_on_free_ports


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackSettings]:
    settings = stack_on_free_ports(tmp_path / "data")
    yield settings
    embedded.down(settings)


def read_env(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


async def test_up_is_idempotent_and_down_stops_what_it_started(stack: StackSettings) -> None:
    started: list[embedded.PartStatus] = []
    embedded.up(stack, on_part=started.append)
    assert {p.name for p in started if p.started_now} == {
        "postgres",
        "redis",
        "temporal",
        "smtp-sink",
        "smtpbz-stub",
        "web",
    }
    pids = {p.name: p.pid for p in started}

    again: list[embedded.PartStatus] = []
    embedded.up(stack, on_part=again.append)
    assert not any(p.started_now for p in again)
    assert {p.name: p.pid for p in again} == pids

    env = read_env(stack.env_file)
    assert env["MAILER_REDIS_URL"] == f"redis://127.0.0.1:{stack.redis_port}/0"
    with psycopg.connect(env["MAILER_DATABASE_URL"].replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT emails_available FROM mailer_smtpbzquota").fetchone() == (0,)
    assert redis_lib.Redis.from_url(env["MAILER_REDIS_URL"]).ping()

    answer = httpx.get(
        f"{env['MAILER_SMTP_BZ_API_URL']}/user", headers={"Authorization": stack.smtpbz_api_key}
    )
    assert answer.status_code == 200 and set(answer.json()) == {
        "quota",
        "tarif_quota",
        "hlimit",
        "hsent",
    }
    assert (
        httpx.get(
            f"{env['MAILER_SMTP_BZ_API_URL']}/user", headers={"Authorization": "wrong"}
        ).status_code
        == 401
    )

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content("body")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=stack.smtp_port)
    assert len(list(stack.outbox.glob("*.eml"))) == 1

    # The unsubscribe service answers, with the stack's own signing key (made once, kept).
    assert httpx.get(f"{env['MAILER_UNSUBSCRIBE_BASE_URL']}/healthz").text == "ok"
    assert env["MAILER_UNSUBSCRIBE_SECRET"] == stack.unsubscribe_secret_file.read_text().strip()
    assert httpx.get(f"{env['MAILER_UNSUBSCRIBE_BASE_URL']}/u/forged").status_code == 400
    # …and its SMTP receiver reads what comes back (mail that is none of ours: read, dropped).
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=int(env["MAILER_INBOUND_PORT"])) as smtp:
        _, reply = await smtp.sendmail("a@example.com", ["unsubscribe@example.com"], b"Hi\n")
    assert reply.endswith("ignored")

    client = await Client.connect(env["MAILER_TEMPORAL_ADDRESS"])
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {"MailerStatus", "MailerDeferReason", "MailerDeferredUntil", "MailerSent"} <= set(
        listed.custom_attributes
    )

    stopped = embedded.down(stack)
    assert set(stopped) == set(pids)
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids.values()
    )
    assert embedded.down(stack) == []


def test_the_cli_judges_by_the_limits_the_stacks_worker_runs_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` runs its worker at 6,000/h round the clock: `mailer status` and `doctor`
    must compare with that, and with the defaults again once the worker is stopped."""
    stack = stack_on_free_ports(tmp_path / ".data")
    monkeypatch.delenv("MAILER_ENV_FILES", raising=False)
    monkeypatch.delenv("MAILER_RATE_PER_HOUR", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        embedded.up(stack)
        assert load_settings().rate_per_hour == 100
        embedded.start_worker(stack, {"MAILER_RATE_PER_HOUR": "6000"})
        assert load_settings().rate_per_hour == 6000
        assert "worker" in embedded.down(stack)
        assert load_settings().rate_per_hour == 100
    finally:
        embedded.down(stack)


def test_a_taken_port_is_a_clear_error(stack: StackSettings) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", stack.redis_port))
        blocker.listen()
        with pytest.raises(StackError) as caught:
            embedded.up(stack)
    assert str(caught.value) == (
        f"redis: port {stack.redis_port} on 127.0.0.1 is already in use by another program; "
        "free it or choose another with MAILER_STACK_REDIS_PORT"
    )
