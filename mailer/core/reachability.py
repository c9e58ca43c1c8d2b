"""One ERROR line when a part (the database, Temporal) becomes unreachable, one INFO line
when it is back, and quiet in between: not a traceback per retry."""

from __future__ import annotations

import logging
import threading

from temporalio.exceptions import ApplicationError

log = logging.getLogger("mailer.core.reachability")

# The ApplicationError type activities raise when the database cannot be reached.
DATABASE_UNREACHABLE = "DatabaseUnreachable"


class Reachability:
    """Remembers, per part, whether it was last seen down (thread-safe)."""

    def __init__(self) -> None:
        self._down: dict[str, str] = {}  # part: its address
        self._lock = threading.Lock()

    def down(self, part: str, address: str, reason: str) -> None:
        with self._lock:
            was_down = part in self._down
            self._down[part] = address
        if not was_down:
            log.error("%s at %s is unreachable: %s (retrying quietly)", part, address, reason)

    def up(self, part: str) -> None:
        with self._lock:
            address = self._down.pop(part, None)
        if address is not None:
            log.info("%s at %s is reachable again", part, address)


REACHABILITY = Reachability()


class QuietWhileUnreachable(logging.Filter):
    """Drops the SDK's per-retry "Completing activity as failed" records for an activity
    that failed because the database is unreachable: that was said once already."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ApplicationError) and error.type == DATABASE_UNREACHABLE)
