"""CPU and wall time per message of mailer's SMTP transaction against aiosmtplib's sendmail.

Each run sends MESSAGES ready-made messages over CONNECTIONS sessions at once (one message
after another on each, as a batch does) to the stack's SMTP sink in its own process. The
sink does not advertise PIPELINING, so both sides write MAIL, RCPT, DATA and the body one at
a time: four round trips a message. The two sides alternate, RUNS times each, on the
worker's event loop (uvloop). Nothing is built or recorded: this is the part of a batch's
CPU per email that the SMTP client costs. Medians are printed, and their ratio (compare
within one run of this script: these machines are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import report_alternation, sink_process
from bench.throughput import ready_messages

SENDER = "news@example.com"


async def send_all(
    port: int, messages: list[tuple[str, bytes]], connections: int, plain: bool
) -> tuple[float, float]:
    """Milliseconds of this process's CPU and of wall time per message."""
    cpu, wall = time.process_time(), time.perf_counter()
    shares = [messages[i::connections] for i in range(connections)]
    await asyncio.gather(*(send_on_one_session(port, share, plain) for share in shares))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / len(messages) * 1e3, wall / len(messages) * 1e3


async def send_on_one_session(port: int, messages: list[tuple[str, bytes]], plain: bool) -> None:
    import aiosmtplib

    from activities.smtp_session import close_smtp, open_smtp
    from activities.smtp_transaction import send_message
    from mailer.mail.views import AccountView

    if plain:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
    else:
        account = AccountView.without_login("127.0.0.1", port, SENDER)
        smtp = await open_smtp(account, timeout=60)
    for recipient, data in messages:
        if plain:
            await smtp.sendmail(SENDER, [recipient], data)
        else:
            await send_message(smtp, SENDER, recipient, data, smtputf8=False)
    if plain:
        await smtp.quit()
    else:
        await close_smtp(smtp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="per side, alternating")
    parser.add_argument("--messages", type=int, default=5000, help="per run")
    parser.add_argument("--connections", type=int, default=5, help="sessions at once")
    args = parser.parse_args()

    from mailer.core.event_loop import run as run_on

    messages = ready_messages(args.messages, 0)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with sink_process() as port:
        for run in range(2 * args.runs):
            plain = run % 2 == 0
            results[plain].append(
                run_on(send_all(port, messages, args.connections, plain), "uvloop")
            )
    report_alternation(
        results,
        ("aiosmtplib's sendmail", "mailer's send_message"),
        "message",
        args.runs,
        "CPU ratio, mailer / plain",
    )
    print(f"{args.connections} sessions at once, {args.messages} messages a run")


if __name__ == "__main__":
    main()
