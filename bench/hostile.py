"""What a hostile sender costs `mailer web`: CPU seconds, peak memory and HTTP latency while
the heavy cases of issue 21 are replayed against it.

Starts `mailer web` (with its receiver) on a throwaway PostgreSQL, then, at once:
- REPORTS delivery reports, each with HEADERS ``List-Unsubscribe`` headers (just under the
  receiver's 2 MB limit), over SMTP, PARALLEL at a time;
- a message of PARTS MIME parts and one nested 1,000 deep;
- SLOW connections that send half a request and then nothing;
while one client GETs ``/healthz`` in a loop. Prints the web process's CPU seconds and peak
RSS (from /proc), the HTTP p50/p99 during the attack, and the receiver's replies.

    .venv/bin/python bench/hostile.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MAILER_ENV_FILES", "")

import aiosmtplib
import httpx

from mailer.stack.servers import free_port, postgres_cluster

REPORTS = 6
PARALLEL = 6
HEADERS = 40_000
PARTS = 100_000
SLOW = 200
ROOT = Path(__file__).resolve().parent.parent


def report(index: int) -> bytes:
    lines = b"".join(f"List-Unsubscribe: <http://x/u/{i}>\n".encode() for i in range(HEADERS))
    return (
        b"From: MAILER-DAEMON@mx.example\nSubject: report %d\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        b"--b\nContent-Type: text/rfc822-headers\n\n" % index + lines + b"\n--b--\n"
    )


def many_parts() -> bytes:
    body = b"".join(b"--b\nContent-Type: text/plain\n\nx\n" for _ in range(PARTS))
    return b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n' + body + b"--b--\n"


def nested() -> bytes:
    head = b"MIME-Version: 1.0\n"
    for depth in range(1000):
        head += f'Content-Type: multipart/mixed; boundary="b{depth}"\n\n--b{depth}\n'.encode()
    return head


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def deliver(port: int, raw: bytes) -> str:
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120) as smtp:
            _, reply = await smtp.sendmail("", ["bounces@news.example"], raw)
        return f"250 {reply[:40]}"
    except aiosmtplib.SMTPResponseException as exc:
        return f"{exc.code} {exc.message[:60]}"


async def attack(base_url: str, smtp_port: int, http_port: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                await client.get(f"{base_url}/healthz")
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.02)

    slow = []
    for _ in range(SLOW):
        connection = socket.create_connection(("127.0.0.1", http_port))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(connection)
    prober = asyncio.create_task(probe())
    limit = asyncio.Semaphore(PARALLEL)

    async def one(raw: bytes) -> str:
        async with limit:
            return await deliver(smtp_port, raw)

    messages = [report(i) for i in range(REPORTS)] + [many_parts(), nested()]
    replies = list(await asyncio.gather(*(one(raw) for raw in messages)))
    done.set()
    await prober
    replies.append(await cut_off(slow))
    for connection in slow:
        connection.close()
    return latencies, replies


async def cut_off(slow: list[socket.socket]) -> str:
    """How many of the half-sent requests the server closed, polled for at most 60 s."""
    started = time.monotonic()
    still_open = list(slow)
    while still_open and time.monotonic() - started < 60:
        for connection in list(still_open):
            connection.setblocking(False)
            try:
                if connection.recv(1) == b"":
                    still_open.remove(connection)
            except BlockingIOError:
                pass
            except OSError:
                still_open.remove(connection)
        await asyncio.sleep(0.2)
    kept = time.monotonic() - started
    return (
        f"half-sent HTTP requests: {len(slow) - len(still_open)} of {len(slow)} cut off "
        f"({len(still_open)} still open after {kept:.0f} s)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster(durable=False) as cluster:
        url = cluster.new_database()
        http_port, smtp_port = free_port(), free_port()
        base_url = f"http://127.0.0.1:{http_port}"
        env = {
            **os.environ,
            "MAILER_DATABASE_URL": url,
            "MAILER_UNSUBSCRIBE_SECRET": "bench-secret",
            "MAILER_UNSUBSCRIBE_BASE_URL": base_url,
            "MAILER_RETURN_PATH": "bounces@news.example",
            "MAILER_INBOUND_PORT": str(smtp_port),
        }
        log = Path(tmp) / "web.log"
        with log.open("wb") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "mailer.cli", "web", "--port", str(http_port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            for _ in range(400):
                try:
                    if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            cpu_before, rss_before = cpu_seconds(web.pid), peak_rss_mb(web.pid)
            started = time.perf_counter()
            latencies, replies = asyncio.run(attack(base_url, smtp_port, http_port))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(web.pid) - cpu_before
            rss = peak_rss_mb(web.pid)
        finally:
            web.terminate()
            web.wait(10)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"attack: {REPORTS} reports × {HEADERS:,} List-Unsubscribe ({PARALLEL} at once), ")
    print(f"        {PARTS:,} MIME parts, 1,000-deep nesting, {SLOW} half-sent HTTP requests")
    print(
        f"wall {wall:.1f} s; web process CPU {cpu:.1f} s; peak RSS {rss_before:.0f} → {rss:.0f} MB"
    )
    print(
        f"HTTP /healthz during the attack: {len(latencies)} requests, "
        f"p50 {quantiles[49]:.1f} ms, p99 {quantiles[98]:.1f} ms"
    )
    for reply in replies:
        print(f"  {reply}")


if __name__ == "__main__":
    main()
