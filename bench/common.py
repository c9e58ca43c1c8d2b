"""Shared plumbing for the benchmarks: throwaway servers and a worker in this process."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MAILER_ENV_FILES", "")

from mailer.stack.throwaway import free_port, serving  # noqa: E402


@contextmanager
def sink_process(
    outbox: Path | None = None, latency_ms: float = 0.0, *, pipelining: bool = False
) -> Iterator[int]:
    """The stack's SMTP sink in its own process (each reply delayed ``latency_ms``;
    advertising PIPELINING if asked); yields its port."""
    port = free_port()
    args = [sys.executable, "-m", "mailer.stack.smtp_sink", "--port", str(port)]
    args += ["--outbox", str(outbox)] if outbox else ["--no-outbox"]
    args += ["--latency-ms", str(latency_ms)]
    args += ["--pipelining"] if pipelining else []
    with serving(args, port, "sink", cwd=ROOT):
        yield port


@contextmanager
def latency_proxy(target: int, rtt_ms: float) -> Iterator[int]:
    """bench/latency_proxy.py in front of ``target``, in its own process; yields its port."""
    port = free_port()
    args = [sys.executable, "-m", "bench.latency_proxy", "--listen", str(port)]
    args += ["--target", str(target), "--rtt-ms", str(rtt_ms)]
    with serving(args, port, "latency proxy", cwd=ROOT):
        yield port


class Stopwatch:
    """Wall seconds, and this process's CPU seconds (all its threads) over the block."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started


def ms_per_call(
    call: Callable[[], object], *, clock: Callable[[], float], rounds: int, calls: int
) -> list[float]:
    """Milliseconds per call on ``clock`` (``time.perf_counter``: wall; ``time.thread_time``:
    this thread's CPU), one figure per round of ``calls`` calls."""
    figures = []
    for _ in range(rounds):
        started = clock()
        for _ in range(calls):
            call()
        figures.append((clock() - started) / calls * 1000)
    return figures


def report_alternation(
    results: dict[bool, list[tuple[float, float]]],
    names: tuple[str, str],
    unit: str,
    runs: int,
    ratio_label: str,
) -> None:
    """Print each side's median CPU and wall milliseconds per ``unit`` and their CPU ratio,
    ours over the baseline's: ``results[True]`` holds the baseline's runs, ``results[False]``
    ours, ``names`` says which is which in that order."""
    width = max(len(label) for label in (*names, ratio_label))
    for baseline, name in zip((True, False), names, strict=True):
        cpu = statistics.median(c for c, _ in results[baseline])
        wall = statistics.median(w for _, w in results[baseline])
        print(f"{name:>{width}}: CPU {cpu:.4f} ms a {unit}, wall {wall:.4f} ms (median of {runs})")
    ratio = statistics.median(c for c, _ in results[False]) / statistics.median(
        c for c, _ in results[True]
    )
    print(f"{ratio_label:>{width}}: {ratio:.2f}")


def cpu_seconds(workers: list[int]) -> dict[str, float]:
    """CPU seconds so far of each part of the stack on this machine: the workers, the
    Temporal server, PostgreSQL (with the backends it has reaped: one per connection
    closed), this process (the starts, the polls, the SMTP sink's thread) and Redis."""
    import psutil

    parts: dict[str, float] = {}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if proc.pid in workers:
            part = "workers"
        elif name == "temporal":
            part = "Temporal"
        elif name == "postgres":
            part = "PostgreSQL"
        elif proc.pid == os.getpid():
            part = "bench"
        elif "redis" in name:
            part = "Redis"
        else:
            continue
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        parts[part] = parts.get(part, 0.0) + t.user + t.system + t.children_user + t.children_system
    return parts
