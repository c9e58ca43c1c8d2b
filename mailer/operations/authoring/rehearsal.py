"""Build every recipient's message once at ``create``, exactly as sending will.

A template that touches ``__class__``, a ``range(10**9)``, a line break from a CSV value
that lands in a header: each passes a syntax check and fails at send time, for every
recipient it touches, for good. Building each message here (the same
:func:`mailer.mail.messages.build_message` the send path calls) finds them before anything
is written. Whether a UTF-8 local part can go out depends on the server, so that is left
to send time.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from mailer.core.errors import InputError
from mailer.mail.messages import UnsendableMessage, build_message
from mailer.mail.templates import TemplateBudgetExceeded
from mailer.mail.views import CampaignView, RecipientView
from mailer.operations.authoring.recipients import Recipient

# A template's time budget at create: per message, and for the whole campaign. A real
# campaign's message renders in milliseconds; a loop that spins (nested ranges) stops here
# instead of hanging `mailer create`.
SECONDS_PER_MESSAGE = 2.0
SECONDS_PER_CAMPAIGN = 60.0


class _OutOfTime(BaseException):
    """Raised by the timer inside the template: a BaseException, so the message builder's
    ``except Exception`` (a template error, per recipient) does not take it."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (a SIGALRM timer: only in the main thread,
    where the CLI runs; elsewhere the per-campaign clock is checked between messages)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Stands in for the account's sender when neither the campaign nor the account names one.
PLACEHOLDER_SENDER = "sender@example.invalid"


@dataclass(frozen=True)
class Unsendable:
    recipient: Recipient
    reason: str


def rehearse(
    recipients: list[Recipient],
    *,
    subject: str,
    html_body: str,
    text_body: str,
    from_email: str,
    from_name: str,
) -> list[Unsendable]:
    """The recipients whose message cannot be built, with the reason for each."""
    campaign = CampaignView(
        id=uuid.uuid4(),
        created_by_id=None,
        subject=subject,
        html_body=html_body,
        text_body=text_body,
        from_email=from_email or PLACEHOLDER_SENDER,
        from_name=from_name,
    )
    now = datetime.now(UTC)
    found = []
    started = time.monotonic()
    for index, recipient in enumerate(recipients):
        view = RecipientView(index, recipient.email, recipient.name, recipient.variables)
        left = SECONDS_PER_CAMPAIGN - (time.monotonic() - started)
        try:
            if left <= 0:
                raise _OutOfTime
            with _deadline(min(SECONDS_PER_MESSAGE, left)):
                build_message(campaign, view, now, server_smtputf8=True)
        except _OutOfTime:
            raise InputError(
                [_too_slow(index, len(recipients), time.monotonic() - started)]
            ) from None
        except UnsendableMessage as exc:
            if isinstance(exc.__cause__, TemplateBudgetExceeded):
                # The template's fault, not this recipient's: one line, not one per row.
                raise InputError([f"templates: over the budget: {exc.__cause__}"]) from None
            found.append(Unsendable(recipient, str(exc)))
    return found


def _too_slow(index: int, total: int, spent: float) -> str:
    return (
        f"templates: building the messages takes too long (stopped at recipient {index + 1} "
        f"of {total} after {spent:.1f} s; at most {SECONDS_PER_MESSAGE:g} s per message and "
        f"{SECONDS_PER_CAMPAIGN:g} s per campaign): a loop too large?"
    )
