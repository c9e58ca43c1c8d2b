"""The dates that are not ordinary: a country's public holidays and transferred working days
(the ``holidays`` package) and the operator's file of extra dates, read for the campaign's
limits (``MAILER_HOLIDAYS``, ``MAILER_HOLIDAYS_FILE``).

Read for this year and the next (a campaign reloads its limits every time it wakes, so a
sleep across New Year sees the new year's dates); cached per process: the package's
calendars are computed once a year, the file again when it changes.
"""

from __future__ import annotations

import functools
import logging
from datetime import date
from pathlib import Path

from mailer.core.working_days import read_dates_file

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _country(code: str, year: int) -> tuple[frozenset[str], frozenset[str]]:
    # Imported on first use: 75 ms that every `mailer` command and every worker paid at
    # start, for a setting most deployments leave empty.
    import holidays

    calendar = holidays.country_holidays(code, years=[year, year + 1])
    closed = frozenset(day.isoformat() for day in calendar)
    opened = frozenset(day.isoformat() for day in calendar.weekend_workdays)
    return closed, opened


@functools.lru_cache(maxsize=4)
def _file(path: str, modified: float) -> tuple[frozenset[str], frozenset[str]]:
    closed, opened = read_dates_file(Path(path))
    return frozenset(closed), frozenset(opened)


def special_dates(country: str, file: Path | None, today: date) -> tuple[list[str], list[str]]:
    """(closed, opened) ISO dates of ``today``'s year and the next; the file's dates win
    over the country's (a file may reopen a holiday, or close a transferred Saturday)."""
    closed: set[str] = set()
    opened: set[str] = set()
    if country:
        country_closed, country_opened = _country(country, today.year)
        closed |= country_closed
        opened |= country_opened
    if file is not None:
        try:
            file_closed, file_opened = _file(str(file), file.stat().st_mtime)
        except (OSError, ValueError) as exc:  # stat, or read_dates_file
            # Checked at start; gone or broken since: the country's dates still hold, and
            # the next read (every time a campaign wakes) tries the file again.
            log.warning("MAILER_HOLIDAYS_FILE unreadable, its dates ignored for now: %s", exc)
            return sorted(closed), sorted(opened)
        closed = (closed - file_opened) | file_closed
        opened = (opened - file_closed) | file_opened
    return sorted(closed), sorted(opened)
