"""Dataclasses as JSON-ready dicts: the one place datetimes become ISO-8601 strings."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any


def jsonable(record: Any) -> dict[str, Any]:
    """``record`` (a dataclass instance) as a dict whose values ``json.dumps`` accepts."""
    return {key: _value(value) for key, value in dataclasses.asdict(record).items()}


def _value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _value(item) for key, item in value.items()}
    return value
