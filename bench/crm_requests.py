"""How soon a CRM's write to the tables is carried out: with the workers' LISTEN, and without.

A real worker process on the embedded stack's servers (bench/faults/rig.py); the CRM queues a
ready campaign (a ``pending`` queue row, on a connection of its own) and we measure the
seconds from its commit until the campaign's workflow exists, ``--campaigns`` times, one
after another at uneven moments (a write lands anywhere in the dispatcher's 10 s turn). With
``MAILER_LISTEN_FOR_REQUESTS`` on and off, alternating, ``--runs`` rounds; medians.

    .venv/bin/python -m bench.crm_requests --campaigns 10 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from temporalio.client import Client
from temporalio.service import RPCError

from bench.faults.rig import Scenario, running_stack
from mailer.stack import seed_data
from workflows.campaign import workflow_id_for

POLL_SECONDS = 0.02


async def started(client: Client, campaign: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id_for(campaign)).describe()
    except RPCError:
        return False
    return True


async def one_round(scenario: Scenario, campaigns: int) -> list[float]:
    worker = scenario.start_worker()
    deadline = time.monotonic() + 60
    while not worker.polling():
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not poll within 60 s; see " + str(worker.log))
        await asyncio.sleep(0.1)
    seconds = []
    for _ in range(campaigns):
        # Land anywhere in the dispatcher's 10 s turn, not in step with it.
        await asyncio.sleep(random.uniform(0.0, 10.0))
        campaign = scenario.campaign(1)
        begun = time.perf_counter()
        seed_data.queue_as_crm(scenario.database_url, campaign)
        while not await started(scenario.client, campaign):
            if time.perf_counter() - begun > 60:
                raise SystemExit("a queued campaign did not start within 60 s")
            await asyncio.sleep(POLL_SECONDS)
        seconds.append(time.perf_counter() - begun)
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    measured: dict[bool, list[float]] = {True: [], False: []}
    with running_stack() as stack:
        client = await Client.connect(stack.temporal_address)
        for run in range(1, args.runs + 1):
            for listening in (True, False):
                scenario = Scenario(stack, client, listen_for_requests=str(listening).lower())
                try:
                    seconds = await one_round(scenario, args.campaigns)
                finally:
                    scenario.close()
                measured[listening] += seconds
                print(
                    f"run {run}, listening {'on' if listening else 'off'}: median "
                    f"{statistics.median(seconds):.2f} s, max {max(seconds):.2f} s",
                    flush=True,
                )
    print()
    print("| MAILER_LISTEN_FOR_REQUESTS | queue row → workflow started: median | max |")
    print("|---|---|---|")
    for listening, seconds in measured.items():
        print(
            f"| {str(listening).lower()} | {statistics.median(seconds):.2f} s "
            f"| {max(seconds):.2f} s |"
        )


if __name__ == "__main__":
    asyncio.run(main())
