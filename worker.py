"""The worker's entry point: ``python worker.py`` or ``python -m worker`` (the container's
command). What it runs is built in :mod:`mailer.runtime.worker`."""

from mailer.core.process_exit import exit_process
from mailer.runtime.worker import main

if __name__ == "__main__":
    exit_process(main())
