"""``python -m mailer.stack up|down|status|worker``: the embedded stack from the command line
(``worker`` starts a worker in the background, as ``make demo`` does; ``down`` stops it)."""

from __future__ import annotations

import sys

from mailer.core.errors import MailerError
from mailer.stack import embedded
from mailer.stack.config import StackSettings


def _print_part(part: embedded.PartStatus) -> None:
    state = "started" if part.started_now else ("running" if part.pid else "stopped")
    pid = f"pid {part.pid}" if part.pid else ""
    print(f"  {part.name:<12} {state:<8} {part.address:<22} {pid}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    stack = StackSettings()
    try:
        if command == "up":
            print("Starting the embedded stack:", flush=True)
            embedded.up(stack, on_part=_print_part)
            settings = embedded.connection_settings(stack)
            print(f"Database migrated; connection settings in {stack.env_file}")
            print(f"Temporal Web UI: {settings['MAILER_TEMPORAL_UI_URL']}")
            print(f"SMTP sink outbox: {stack.outbox}")
        elif command == "down":
            stopped = embedded.down(stack)
            print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif command == "worker":
            _print_part(embedded.start_worker(stack))
            print(f"Worker log: {stack.log_dir / 'worker.log'}")
        elif command == "status":
            for part in embedded.status(stack):
                _print_part(part)
        else:
            print(f"error: unknown command {command!r} (up, down, status, worker)", file=sys.stderr)
            return 2
    except MailerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
