"""The fault report: each fault injected into the embedded stack during real campaigns,
with a real worker process and a recording SMTP sink; prints one table.

Columns: the fault, times injected, recipients, delivered (distinct), lost, duplicated
(deliveries beyond the first, and whether each kept its first Message-ID), ledger
mismatches (the sink and ``mailer_campaignrecipient``/``mailer_sendlog`` disagree, or a
scenario's own check failed: the window after Redis, the breaker's count, the hour's
limit), and the seconds from healing the fault to the next delivery. Exits 1 if any row
lost a recipient, mismatched the ledger or changed a Message-ID. ``--only NAME`` runs some.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Stopwatch
from bench.faults.rig import Outcome, running_stack
from bench.faults.scenarios import SCENARIOS

HEADER = (
    "| fault | injected | recipients | delivered | lost | duplicated (first Message-ID kept) "
    "| ledger mismatches | recovered in |"
)


def table_row(outcome: Outcome) -> str:
    kept = "yes" if outcome.duplicates_kept_message_id else "**no**"
    duplicated = f"{outcome.duplicated} ({kept})" if outcome.duplicated else "0"
    return (
        f"| {outcome.fault} | {outcome.injected} | {outcome.recipients} | {outcome.delivered} "
        f"| {outcome.lost} | {duplicated} | {outcome.ledger_mismatches} "
        f"| {outcome.recover_seconds:.1f} s |"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[])
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)
    outcomes: list[Outcome] = []
    with running_stack() as stack:
        for name in names:
            with Stopwatch() as watch:
                outcome = await SCENARIOS[name](stack)
            outcomes.append(outcome)
            print(f"{name}: {watch.seconds:.0f} s; " + "; ".join(outcome.notes), flush=True)
    print()
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for outcome in outcomes:
        print(table_row(outcome))
    return 0 if all(o.clean for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
