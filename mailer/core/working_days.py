"""Which local dates are working days: the weekdays that work, public holidays, and the
days a government moves (pure; the dates come from ``holidays`` and a file, read in an
activity, and travel in the campaign's limits as ISO strings).

``MAILER_WORKING_DAYS`` is ``mon-sun`` by default (the seed sends every day of the year);
``mon-fri`` skips weekends. A date listed closed (a public holiday, a file's ``YYYY-MM-DD``)
never works; a date listed open (a transferred working Saturday: the ``holidays`` package's
``weekend_workdays``, a file's ``YYYY-MM-DD working``) works whatever its weekday.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = tuple(range(7))


def parse_working_days(text: str) -> tuple[int, ...]:
    """``"mon-fri"`` → (0, 1, 2, 3, 4); ``"mon-fri,sun"``, ``"tue,thu"``; a range may wrap
    (``"sun-thu"``). Raises ValueError naming the bad part."""
    days: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        first, dash, last = part.partition("-")
        if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
            raise ValueError(f"{part!r} is not a day or a range of days (mon, tue, … sun)")
        start = WEEKDAYS.index(first)
        end = WEEKDAYS.index(last) if dash else start
        day = start
        while True:
            days.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    if not days:
        raise ValueError("no working day given")
    return tuple(sorted(days))


@dataclass(frozen=True)
class WorkingDays:
    """The weekdays that work (0 = Monday) and the dates that say otherwise."""

    weekdays: tuple[int, ...] = EVERY_DAY
    closed: frozenset[str] = field(default_factory=frozenset)  # ISO dates off
    opened: frozenset[str] = field(default_factory=frozenset)  # ISO dates on

    @classmethod
    def of(
        cls, weekdays: Iterable[int], closed: Iterable[str] = (), opened: Iterable[str] = ()
    ) -> WorkingDays:
        return cls(tuple(weekdays), frozenset(closed), frozenset(opened))

    @property
    def every_day(self) -> bool:
        return len(self.weekdays) == 7 and not self.closed

    def works(self, day: date) -> bool:
        iso = day.isoformat()
        if iso in self.opened:
            return True
        if iso in self.closed:
            return False
        return day.weekday() in self.weekdays


def parse_dates_file(text: str, where: str) -> tuple[list[str], list[str]]:
    """A file of extra dates: ``YYYY-MM-DD`` (a day off) or ``YYYY-MM-DD working`` (a
    working day), ``#`` comments, blank lines. Returns (closed, opened) ISO dates.

    Raises ValueError with ``where:LINE`` and what is wrong."""
    closed: list[str] = []
    opened: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        try:
            day = date.fromisoformat(words[0])
        except ValueError:
            raise ValueError(f"{where}:{number}: {words[0]!r} is not a YYYY-MM-DD date") from None
        if len(words) == 1:
            closed.append(day.isoformat())
        elif len(words) == 2 and words[1].lower() == "working":
            opened.append(day.isoformat())
        else:
            raise ValueError(f"{where}:{number}: expected 'YYYY-MM-DD' or 'YYYY-MM-DD working'")
    return closed, opened


def country_code(text: str) -> str:
    """``MAILER_HOLIDAYS`` / ``--holidays``: ``"ru"`` → ``"RU"`` ('' for none).

    Raises ValueError when the holidays package does not know the country."""
    # Imported here: workflows import this module, and their sandbox re-imports what a
    # module imports at its top for every run.
    import holidays

    code = text.strip().upper()
    if code and code not in holidays.list_supported_countries():
        raise ValueError(f"{code!r} is not a country the holidays package knows (e.g. RU)")
    return code


def read_dates_file(path: Path) -> tuple[list[str], list[str]]:
    """:func:`parse_dates_file` of the file at ``path``; ValueError when it cannot be read
    (the reason) or is wrong (``path:LINE``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_dates_file(text, str(path))
