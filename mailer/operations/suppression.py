"""The suppression list (``mailer_suppression``): addresses mailer never writes to again.

``mailer suppress …`` manages it; ``create`` leaves suppressed addresses out; the send path
checks it again as each batch claims its recipients; unsubscribes (``mailer web``) and hard
bounces add to it. Addresses are kept lower-cased and compared that way.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import Suppression
from mailer.core.cells import formula_problem, spreadsheet_cell
from mailer.core.errors import InputError
from workflows.states import SuppressionReason

EXPORT_COLUMNS = ("email", "reason", "campaign_id", "note", "created_at")


@dataclass(frozen=True)
class SuppressedAddress:
    email: str
    reason: str
    campaign_id: str | None
    note: str
    created_at: datetime


def normalized(address: str, where: str) -> str:
    """The address as the list keeps it (validated, lower-cased), or an InputError naming
    ``where`` it came from."""
    try:
        found = validate_email(address.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InputError([f"{where}: {address[:100]!r} is not a valid address: {exc}"]) from None
    formula = formula_problem(found)
    if formula is not None:
        raise InputError([f"{where}: {address[:100]!r} {formula}"])
    return found


def add(
    session: Session,
    addresses: Iterable[str],
    reason: SuppressionReason,
    *,
    campaign_id: uuid.UUID | None = None,
    note: str = "",
) -> int:
    """Suppress ``addresses`` (already normalized); returns how many were new. An address
    already on the list keeps its first reason."""
    rows = [
        {"address": a, "reason": reason.value, "campaign_id": campaign_id, "note": note}
        for a in dict.fromkeys(addresses)
    ]
    if not rows:
        return 0
    result = session.execute(
        insert(Suppression)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["address"])
        .returning(Suppression.id)
    )
    return len(result.all())


def remove(session: Session, addresses: Iterable[str]) -> int:
    result = session.execute(
        delete(Suppression)
        .where(Suppression.address.in_(list(addresses)))
        .returning(Suppression.id)
    )
    return len(result.all())


def suppressed_addresses(
    session: Session, reason: SuppressionReason | None = None
) -> list[SuppressedAddress]:
    query = select(Suppression).order_by(Suppression.created_at, Suppression.id)
    if reason is not None:
        query = query.where(Suppression.reason == reason.value)
    return [
        SuppressedAddress(
            row.address,
            row.reason,
            str(row.campaign_id) if row.campaign_id else None,
            row.note,
            row.created_at,
        )
        for row in session.scalars(query)
    ]


def reasons_for(session: Session, addresses: Iterable[str]) -> dict[str, str]:
    """{lower-cased address: reason} for those of ``addresses`` that are suppressed."""
    wanted = list({a.lower() for a in addresses})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        rows = session.execute(
            select(Suppression.address, Suppression.reason).where(Suppression.address.in_(chunk))
        )
        found.update({address: reason for address, reason in rows})
    return found


def count_by_reason(session: Session) -> Counter[str]:
    rows = session.execute(
        select(Suppression.reason, func.count()).group_by(Suppression.reason)
    ).all()
    return Counter({reason: count for reason, count in rows})


def read_csv(path: Path) -> list[str]:
    """The ``email`` column of a CSV, each address checked; every bad line is reported as
    ``FILE:LINE`` and nothing is returned if any is bad."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([f"{path}: cannot read: {exc}"]) from None
    reader = csv.reader(io.StringIO(text))
    header = [column.strip().lower() for column in next(reader, [])]
    if "email" not in header:
        raise InputError([f"{path}:1: no 'email' column (columns: {', '.join(header) or 'none'})"])
    column = header.index("email")
    addresses, problems = [], []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        value = row[column] if column < len(row) else ""
        try:
            addresses.append(normalized(value, f"{path}:{line}"))
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(
            problems[:20] + ([f"… {len(problems) - 20} more"] if len(problems) > 20 else [])
        )
    return addresses


def to_csv(rows: list[SuppressedAddress]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        cells = [row.email, row.reason, row.campaign_id or "", row.note]
        writer.writerow([*map(spreadsheet_cell, cells), row.created_at.isoformat()])
    return out.getvalue()
