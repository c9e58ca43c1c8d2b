"""How long a campaign stands still after its worker is ``kill -9``ed, by heartbeat timeout.

The killed batch is retried on another worker once Temporal misses its heartbeats for
``MAILER_SEND_HEARTBEAT_TIMEOUT_SECONDS``, and its claims' lease runs out after the same
time; a new worker process is started at once. Measured: seconds from the kill to the sink's
next delivery (the worst of ``--kills`` per run), for each timeout in ``--timeouts``,
alternating, ``--runs`` rounds, medians. Real worker processes, the embedded stack's
Temporal dev server, PostgreSQL and Redis (bench/faults/rig.py).

    .venv/bin/python -m bench.recovery --timeouts 20 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from bench.faults.rig import running_stack
from bench.faults.scenarios import worker_killed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeouts", type=int, nargs="+", default=[20, 5])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--recipients", type=int, default=900)
    args = parser.parse_args()
    worst: dict[int, list[float]] = {timeout: [] for timeout in args.timeouts}
    with running_stack() as stack:
        for run in range(1, args.runs + 1):
            for timeout in args.timeouts:
                outcome = await worker_killed(
                    stack,
                    recipients=args.recipients,
                    kills=args.kills,
                    send_heartbeat_timeout_seconds=timeout,
                )
                worst[timeout].append(outcome.recover_seconds)
                print(
                    f"run {run}, heartbeat timeout {timeout} s: sends again after "
                    f"{outcome.recover_seconds:.1f} s at worst ({'; '.join(outcome.notes)})",
                    flush=True,
                )
    print()
    print("| heartbeat timeout | stands still after `kill -9` (median of the worst per run) |")
    print("|---|---|")
    for timeout, seconds in worst.items():
        print(f"| {timeout} s | {statistics.median(seconds):.1f} s |")


if __name__ == "__main__":
    asyncio.run(main())
