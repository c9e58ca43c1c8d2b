"""Dataclasses as JSON-ready dicts: the one place datetimes become ISO-8601 strings."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def jsonable(record: Any, timezone: str | None = None) -> dict[str, Any]:
    """``record`` (a dataclass instance) as a dict whose values ``json.dumps`` accepts;
    datetimes in ``timezone`` (MAILER_TIMEZONE for operators) when given."""
    zone = ZoneInfo(timezone) if timezone else None
    return {key: _value(value, zone) for key, value in dataclasses.asdict(record).items()}


def _value(value: object, zone: ZoneInfo | None) -> object:
    if isinstance(value, datetime):
        return (value.astimezone(zone) if zone else value).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {key: _value(item, zone) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_value(item, zone) for item in value]
    return value
