"""Create a campaign from operator input: everything is checked before anything is written."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Campaign, CampaignRecipient, CampaignStatus, User
from db.queries import get_account
from mailer.core.errors import InputError
from mailer.mail.addresses import has_ascii_form
from mailer.mail.templates import check_template
from mailer.operations import suppression
from mailer.operations.authoring.recipients import (
    DEFAULT_MAX_FILE_MB,
    Recipient,
    capped,
    control_character,
    parse_recipients,
    read_text,
)
from mailer.operations.authoring.rehearsal import rehearse

# Template variables every message has beside the CSV's columns: its own unsubscribe link.
BUILTIN_VARIABLES = ("unsubscribe_url",)


@dataclass(frozen=True)
class CampaignDraft:
    """What the operator asked for; file paths are read during :func:`create_campaign`."""

    name: str
    subject: str
    recipients_path: Path
    created_by: str
    html_path: Path | None = None
    text_path: Path | None = None
    encoding: str = "utf-8"
    skip_invalid: bool = False
    from_email: str = ""
    from_name: str = ""
    # MAILER_RECIPIENT_TIMEZONES: the CSV's `timezone` column is each recipient's zone.
    recipient_timezones: bool = False


@dataclass
class CreatedCampaign:
    campaign_id: uuid.UUID
    recipients: int
    warnings: list[str] = field(default_factory=list)
    skipped_invalid: int = 0
    merged_duplicates: int = 0
    # Addresses left out because they are on the suppression list, by reason.
    skipped_suppressed: dict[str, int] = field(default_factory=dict)


# The columns' lengths (the seed's schema): longer values are one line, not a DataError.
MAX_NAME = 255
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_FROM_NAME = 255


def length_problems(option: str, value: str, limit: int) -> list[str]:
    if len(value) > limit:
        return [f"{option}: {len(value):,} characters, at most {limit:,}"]
    return []


def header_problems(option: str, value: str, *, required: bool) -> list[str]:
    """Problems with a value that ends up in a mail header (subject, sender name)."""
    if required and not value.strip():
        return [f"{option}: empty"]
    if "\r" in value or "\n" in value:
        return [f"{option}: contains a line break (CR/LF), which is not allowed in a header"]
    control = control_character(value)
    if control is not None:
        return [f"{option}: contains the control character {control}, not allowed in a header"]
    return []


def sender_problems(option: str, address: str) -> list[str]:
    """Problems with a sender address: valid, and sendable to any server (an IDN domain
    goes as its A-label, but a non-ASCII local part would need SMTPUTF8 everywhere)."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return [f"{option}: {address!r} is not a valid address: {exc}"]
    if not has_ascii_form(address):
        return [
            f"{option}: {address!r} has a non-ASCII part before the @, which servers without "
            "SMTPUTF8 refuse: use an ASCII sender address"
        ]
    return []


def find_user(session: Session, user: str) -> User | None:
    """A user by username, or by numeric id."""
    found = session.scalar(select(User).where(User.username == user))
    if found is None and user.isdigit():
        found = session.get(User, int(user))
    return found


def _read_body(path: Path | None, problems: list[str]) -> str:
    if path is None:
        return ""
    try:
        return read_text(path)
    except InputError as exc:
        problems.extend(exc.problems)
        return ""


@dataclass
class _Bodies:
    html: str
    text: str


def create_campaign(
    session: Session,
    draft: CampaignDraft,
    *,
    max_recipients: int,
    max_file_mb: int = DEFAULT_MAX_FILE_MB,
) -> CreatedCampaign:
    """Validate ``draft`` completely, then write the campaign and its recipients.

    Raises :class:`InputError` with every problem found; in that case nothing is written
    (the caller's session is left untouched).
    """
    problems = _option_problems(draft)
    bodies = _Bodies(
        html=_read_body(draft.html_path, problems), text=_read_body(draft.text_path, problems)
    )
    recipients = parse_recipients(
        draft.recipients_path,
        encoding=draft.encoding,
        skip_invalid=draft.skip_invalid,
        max_recipients=max_recipients,
        max_file_mb=max_file_mb,
    )
    problems += recipients.problems
    if draft.recipient_timezones:
        problems += zone_problems(draft.recipients_path, recipients.recipients)
    kept = recipients.recipients
    skipped = recipients.skipped_invalid
    kept, skipped_suppressed = _without_suppressed(session, kept)
    if recipients.recipients and not kept:
        problems.append(_all_suppressed(draft, skipped_suppressed))
    if recipients.columns is not None:
        problems += _template_problems(draft, bodies, recipients.columns)
        if not problems:  # every message is built only once everything else is right
            kept, dropped, unsendable = _rehearsed(session, draft, bodies, kept)
            skipped += dropped
            problems += unsendable
    user = find_user(session, draft.created_by)
    if user is None:
        problems.append(f"--created-by: no user {draft.created_by!r} ({ADD_USER})")
    if problems or user is None:
        raise InputError(problems)
    campaign_id = _write(session, draft, bodies, kept, user)
    return CreatedCampaign(
        campaign_id=campaign_id,
        recipients=len(kept),
        warnings=recipients.warnings,
        skipped_invalid=skipped,
        merged_duplicates=recipients.merged_duplicates,
        skipped_suppressed=skipped_suppressed,
    )


ADD_USER = "add one with: mailer user add NAME"


def _all_suppressed(draft: CampaignDraft, skipped: dict[str, int]) -> str:
    return (
        f"{draft.recipients_path}: every address is on the suppression list "
        f"({_by_reason(skipped)}); see `mailer suppress list`"
    )


def _without_suppressed(
    session: Session, recipients: list[Recipient]
) -> tuple[list[Recipient], dict[str, int]]:
    """The recipients not on the suppression list, and how many were left out, by reason."""
    reasons = suppression.reasons_for(session, (r.email for r in recipients))
    if not reasons:
        return recipients, {}
    kept = [r for r in recipients if r.email.lower() not in reasons]
    skipped = Counter(reasons[r.email.lower()] for r in recipients if r.email.lower() in reasons)
    return kept, dict(skipped.most_common())


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


def _rehearsed(
    session: Session, draft: CampaignDraft, bodies: _Bodies, recipients: list[Recipient]
) -> tuple[list[Recipient], int, list[str]]:
    """Build every message as sending will: (recipients kept, how many dropped, problems)."""
    unsendable = rehearse(
        recipients,
        subject=draft.subject,
        html_body=bodies.html,
        text_body=bodies.text,
        from_email=draft.from_email or _account_sender(session),
        from_name=draft.from_name,
    )
    if not unsendable:
        return recipients, 0, []
    if draft.skip_invalid:
        dropped = {id(u.recipient) for u in unsendable}
        kept = [r for r in recipients if id(r) not in dropped]
        problems = [] if kept else [f"{draft.recipients_path}: no sendable recipients left"]
        return kept, len(unsendable), problems
    lines = [
        f"{draft.recipients_path}:{u.recipient.line}: cannot build the message: {u.reason}"
        for u in unsendable
    ]
    return recipients, 0, capped(draft.recipients_path, lines, "unsendable recipients")


def _account_sender(session: Session) -> str:
    account = get_account(session)
    return account.from_email if account is not None else ""


def _option_problems(draft: CampaignDraft) -> list[str]:
    problems: list[str] = []
    if not draft.name.strip():
        problems.append("--name: empty")
    problems += length_problems("--name", draft.name.strip(), MAX_NAME)
    problems += length_problems("--subject", draft.subject, MAX_SUBJECT)
    problems += length_problems("--from-name", draft.from_name, MAX_FROM_NAME)
    problems += header_problems("--subject", draft.subject, required=True)
    problems += header_problems("--from-name", draft.from_name, required=False)
    if draft.from_email:
        problems += sender_problems("--from-email", draft.from_email)
    if draft.html_path is None and draft.text_path is None:
        problems.append("no body: give --html FILE, --text FILE, or both")
    return problems


def _template_problems(draft: CampaignDraft, bodies: _Bodies, columns: list[str]) -> list[str]:
    """Syntax errors and unknown variables in the subject and bodies (the CSV's columns and
    ``unsubscribe_url``, each message's own one-click unsubscribe link)."""
    problems: list[str] = []
    if not header_problems("--subject", draft.subject, required=True):
        problems += check_template(
            "--subject", draft.subject, columns, html=False, builtins=BUILTIN_VARIABLES
        )
    if draft.html_path is not None and bodies.html:
        problems += check_template(
            str(draft.html_path), bodies.html, columns, html=True, builtins=BUILTIN_VARIABLES
        )
    if draft.text_path is not None and bodies.text:
        problems += check_template(
            str(draft.text_path), bodies.text, columns, html=False, builtins=BUILTIN_VARIABLES
        )
    return problems


TIMEZONE_COLUMN = "timezone"
MAX_LISTED_ZONES = 20


def recipient_zone(recipient: Recipient) -> str:
    """The recipient's `timezone` column ('' without one: MAILER_TIMEZONE)."""
    for column, value in recipient.variables.items():
        if column.lower() == TIMEZONE_COLUMN:
            return value
    return ""


def zone_problems(path: Path, recipients: list[Recipient]) -> list[str]:
    """One line per recipient whose `timezone` is not an IANA zone, naming file and line."""
    known = available_timezones()
    lines = [
        f"{path}:{r.line}: {TIMEZONE_COLUMN}: {printable_value(zone)!r} is not an IANA time "
        "zone (such as Europe/Moscow or Asia/Vladivostok)"
        for r in recipients
        if (zone := recipient_zone(r)) and zone not in known
    ]
    if len(lines) > MAX_LISTED_ZONES:
        more = len(lines) - MAX_LISTED_ZONES
        lines = [*lines[:MAX_LISTED_ZONES], f"{path}: … and {more} more unknown time zones"]
    return lines


def printable_value(value: str) -> str:
    return value if len(value) <= 64 else value[:64] + "…"


def _write(
    session: Session,
    draft: CampaignDraft,
    bodies: _Bodies,
    recipients: list[Recipient],
    user: User,
) -> uuid.UUID:
    campaign = Campaign(
        id=uuid.uuid4(),
        name=draft.name.strip(),
        status=CampaignStatus.READY,
        subject=draft.subject,
        html_body=bodies.html,
        text_body=bodies.text,
        from_email=draft.from_email,
        from_name=draft.from_name,
        created_by_id=user.id,
        total_recipients=len(recipients),
    )
    session.add(campaign)
    session.flush()
    session.execute(
        insert(CampaignRecipient),
        [
            {
                "campaign_id": campaign.id,
                "email": r.email,
                "name": r.name,
                "variables": r.variables,
                "timezone": recipient_zone(r) if draft.recipient_timezones else "",
            }
            for r in recipients
        ],
    )
    return campaign.id
