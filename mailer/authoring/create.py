"""Create a campaign from operator input: everything is checked before anything is written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Campaign, CampaignRecipient, CampaignStatus, User
from mailer.authoring.recipients import Recipient, parse_recipients, read_text
from mailer.authoring.templates import check_template
from mailer.errors import InputError


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


@dataclass
class CreatedCampaign:
    campaign_id: uuid.UUID
    recipients: int
    warnings: list[str] = field(default_factory=list)
    skipped_invalid: int = 0
    merged_duplicates: int = 0


def header_problems(option: str, value: str, *, required: bool) -> list[str]:
    """Problems with a value that ends up in a mail header (subject, sender name)."""
    if required and not value.strip():
        return [f"{option}: empty"]
    if "\r" in value or "\n" in value:
        return [f"{option}: contains a line break (CR/LF), which is not allowed in a header"]
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
    session: Session, draft: CampaignDraft, *, max_recipients: int
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
    )
    problems += recipients.problems
    if recipients.columns is not None:
        problems += _template_problems(draft, bodies, recipients.columns)
    user = find_user(session, draft.created_by)
    if user is None:
        problems.append(
            f"--created-by: no user {draft.created_by!r} (add one with: mailer user add NAME)"
        )
    if problems or user is None:
        raise InputError(problems)
    campaign_id = _write(session, draft, bodies, recipients.recipients, user)
    return CreatedCampaign(
        campaign_id=campaign_id,
        recipients=len(recipients.recipients),
        warnings=recipients.warnings,
        skipped_invalid=recipients.skipped_invalid,
        merged_duplicates=recipients.merged_duplicates,
    )


def _option_problems(draft: CampaignDraft) -> list[str]:
    problems: list[str] = []
    if not draft.name.strip():
        problems.append("--name: empty")
    problems += header_problems("--subject", draft.subject, required=True)
    problems += header_problems("--from-name", draft.from_name, required=False)
    if draft.from_email:
        try:
            validate_email(draft.from_email, check_deliverability=False)
        except EmailNotValidError as exc:
            problems.append(f"--from-email: {draft.from_email!r} is not a valid address: {exc}")
    if draft.html_path is None and draft.text_path is None:
        problems.append("no body: give --html FILE, --text FILE, or both")
    return problems


def _template_problems(draft: CampaignDraft, bodies: _Bodies, columns: list[str]) -> list[str]:
    """Syntax errors and unknown variables in the subject and bodies."""
    problems: list[str] = []
    if not header_problems("--subject", draft.subject, required=True):
        problems += check_template("--subject", draft.subject, columns, html=False)
    if draft.html_path is not None and bodies.html:
        problems += check_template(str(draft.html_path), bodies.html, columns, html=True)
    if draft.text_path is not None and bodies.text:
        problems += check_template(str(draft.text_path), bodies.text, columns, html=False)
    return problems


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
            }
            for r in recipients
        ],
    )
    return campaign.id
