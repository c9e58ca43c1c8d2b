"""Taking over a database whose seed tables the CRM made (Django's migrations, not ours).

mailer's first migration creates the seed's tables; on the CRM's own database they exist
already and that migration must be recorded, not run. :func:`adopt` checks every seed table
and every column mailer reads or writes (present, of a compatible type, long enough), changes
nothing if anything is off, and otherwise records the first migration and applies the rest,
which only add (columns with defaults, mailer's own tables, the request trigger).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import Column, Engine, Inspector, create_engine, inspect
from sqlalchemy.types import TypeEngine

from db.migrate import alembic_config
from db.models import Base

#: The tables of the seed (the CRM's), as mailer's first migration creates them.
SEED_TABLES = (
    "accounts_user",
    "mailer_globalmailaccount",
    "mailer_smtpbzquota",
    "mailer_campaign",
    "mailer_campaignqueue",
    "mailer_campaignrecipient",
    "mailer_sendlog",
)
#: Columns mailer's later migrations add to the seed's tables: adopt adds them.
ADDED_BY_MAILER = frozenset(
    {
        ("mailer_campaignrecipient", "attempts"),
        ("mailer_campaignrecipient", "retry_after"),
        ("mailer_campaignrecipient", "claim_token"),
        ("mailer_campaignrecipient", "claimed_until"),
        ("mailer_campaignrecipient", "deferred_since"),
        ("mailer_campaignrecipient", "outcome_unknown_at"),
        ("mailer_campaignrecipient", "timezone"),
        ("mailer_globalmailaccount", "smtp_ca_pem"),
        ("mailer_globalmailaccount", "smtp_verify_tls"),
    }
)
SEED_REVISION = "0001"


class SchemaState(enum.Enum):
    EMPTY = "empty"  # no seed tables: `mailer db upgrade` creates them
    UNADOPTED = "unadopted"  # the seed's tables, made by someone else: `mailer db adopt`
    MANAGED = "managed"  # mailer's migrations are recorded


def schema_state(engine: Engine) -> SchemaState:
    inspector = inspect(engine)
    if inspector.has_table("alembic_version"):
        return SchemaState.MANAGED
    if any(inspector.has_table(table) for table in SEED_TABLES):
        return SchemaState.UNADOPTED
    return SchemaState.EMPTY


def mismatches(engine: Engine) -> list[str]:
    """One line per table or column mailer needs that is missing or incompatible."""
    inspector = inspect(engine)
    problems: list[str] = []
    for table in SEED_TABLES:
        if not inspector.has_table(table):
            problems.append(f"{table}: table missing")
            continue
        problems += _column_problems(inspector, table)
    return problems


def _column_problems(inspector: Inspector, table: str) -> list[str]:
    found = {column["name"]: column["type"] for column in inspector.get_columns(table)}
    problems = []
    for column in Base.metadata.tables[table].columns:
        if (table, column.name) in ADDED_BY_MAILER:
            continue
        if column.name not in found:
            problems.append(f"{table}.{column.name}: column missing ({_kind(column.type)})")
            continue
        problem = _type_problem(column, found[column.name])
        if problem:
            problems.append(f"{table}.{column.name}: {problem}")
    return problems


def _type_problem(column: Column[object], found: TypeEngine[object]) -> str:
    wanted, have = _kind(column.type), _kind(found)
    if wanted != have:
        return f"{found} where mailer needs {wanted}"
    needed = getattr(column.type, "length", None)
    length = getattr(found, "length", None)
    if needed and length and length < needed:
        return f"{found} is shorter than the {needed} characters mailer may write"
    return ""


def _kind(type_: TypeEngine[object]) -> str:
    """What values a column holds, as far as compatibility goes (a varchar and a text both
    hold text; an integer and a bigint both hold whole numbers)."""
    try:
        python = type_.python_type
    except NotImplementedError:
        return type(type_).__name__.lower()
    return {
        str: "text",
        int: "integer",
        bool: "boolean",
        dict: "json",
        list: "json",
    }.get(python, python.__name__.lower())


@dataclass(frozen=True)
class Adoption:
    state: SchemaState
    problems: list[str]


def adopt(url: str) -> Adoption:
    """Adopt the CRM's database at ``url`` (nothing is written if there are problems)."""
    engine = create_engine(url)
    try:
        state = schema_state(engine)
        if state != SchemaState.UNADOPTED:
            return Adoption(state, [])
        problems = mismatches(engine)
        if problems:
            return Adoption(state, problems)
    finally:
        engine.dispose()
    from alembic import command  # on use: see db.migrate.alembic_config

    config = alembic_config(url)
    command.stamp(config, SEED_REVISION)
    command.upgrade(config, "head")
    return Adoption(SchemaState.MANAGED, [])
