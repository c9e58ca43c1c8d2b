"""One send batch: one SMTP connection, one recipient per transaction, a commit per message.

Right after the server's 250 the recipient and its send log are committed (one statement,
its own transaction), and that commit runs while the next message is on the wire: a crash
repeats at most the two messages in flight (each with its own Message-ID, the same one
again). A pause or cancel stops the batch after the message in flight, which is still
recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import aiosmtplib
from sqlalchemy import Connection, Engine

from activities import metrics
from activities.claims import (
    BatchPlan,
    Claim,
    first_retry_if_none_ready,
    plan_batch,
    release_claims,
    renew_claims,
)
from activities.ledger import (
    Refusal,
    RetryPolicy,
    back_off_domain,
    campaign_status_now,
    record_deferred,
    record_failed,
    record_unknown,
    sends_this_hour,
    take_snapshot,
)
from activities.ratelimit import OldEngineWatch, RateLimiter
from activities.sent_marks import MarksPool, SentMarks
from activities.smtp_session import SmtpSessionFailed, close_smtp, open_smtp
from activities.smtp_transaction import OutcomeUnknown, send_message
from db.engine import session_scope
from mailer.core.settings import Settings
from mailer.mail.messages import (
    BuiltMessage,
    UnsendableMessage,
    build_message,
    message_id_for,
)
from mailer.mail.pacing import minute_bounds
from mailer.mail.smtp_replies import (
    ErrorClass,
    SmtpFailure,
    Stage,
    classify_exception,
    is_hard_bounce,
)
from mailer.mail.temporary_replies import TemporaryKind
from mailer.mail.unsubscribe_tokens import Links, Target, TargetKind, links
from mailer.mail.views import CampaignView, RecipientView
from workflows.contracts import SendBatchInput, SendBatchResult, Snapshot
from workflows.gates import batch_is_stale
from workflows.states import BatchLimit, CampaignStatus, SendOutcome
from workflows.working_hours import WorkingHours

log = logging.getLogger("mailer.sending")

T = TypeVar("T")
# Progress heartbeats between messages, at most this often. Temporal sends one every 0.8 of
# the heartbeat timeout (4 s at the default 5 s) whatever we call, but the SDK encodes the
# details at every call: at 0.1 s that was 2-3 % of the worker's CPU per email on loopback.
# The keep-alive below beats on its own clock too, so a slow message never starves it.
HEARTBEAT_EVERY = 1.0
# The background heartbeat's period at most (a fifth of the lease when that is shorter).
KEEPALIVE_SECONDS = 1.0
# A 4xx that says neither "this recipient" nor "you, slow down" (temporary_replies' unclear)
# is held. This many different recipients refused so in a row start a probe: the batch slows
# down and tries up to PROBES further recipients (of another domain when the run was all one
# domain). A probe the server takes, or refuses for a reason of its own, shows the run was
# per-recipient (or per-domain); only if every probe meets an unclear 4xx too is it a
# throttle: the batch stops, the campaign defers and the breaker counts. A real throttle
# that does not say so costs UNCLEAR_RUN + PROBES messages; one that says so costs one.
UNCLEAR_RUN = 3
PROBES = 2
PROBE_PAUSE_SECONDS = 1.0


@dataclass
class BatchHooks:
    """How the batch talks to its runtime (Temporal's activity API, or a test's)."""

    heartbeat: Callable[[int, int], None]
    should_stop: Callable[[], bool]
    # This attempt's identity (its claims carry it) and time: the attempt's own start,
    # never a "now" computed before an earlier attempt.
    attempt_token: str
    now: datetime


@dataclass
class _Held:
    """Refusals whose meaning waits on what comes next: a run of unclear 4xx across
    different recipients may be a server-wide throttle (probed first), and a run of 5xx at
    DATA is the server refusing the campaign, not each recipient. Either run, broken by any
    other outcome or the batch's end, is recorded recipient by recipient."""

    refusals: list[Refusal] = field(default_factory=list)

    def take(self) -> list[Refusal]:
        taken, self.refusals = self.refusals, []
        return taken

    def one_domain(self) -> str | None:
        """The domain every held refusal shares, if they share one."""
        domains = {domain_of(refusal.email) for refusal in self.refusals}
        return domains.pop() if len(domains) == 1 else None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def next_recipient(
    queue: deque[RecipientView], *, skip: set[str], prefer_not: str | None
) -> RecipientView | None:
    """The batch's next recipient: none of a domain in ``skip`` (backed off: they stay
    pending), and one outside ``prefer_not`` while there is one (a probe tries another
    domain than the run's)."""
    while queue and domain_of(queue[0].email) in skip:
        queue.popleft()
    if not queue:
        return None
    if prefer_not is not None:
        for index, recipient in enumerate(queue):
            domain = domain_of(recipient.email)
            if domain != prefer_not and domain not in skip:
                del queue[index]
                return recipient
    return queue.popleft()


class _Recording:
    """The last accepted message's "sent" mark, committing in a thread while the next
    message goes over SMTP: the message need not wait for the commit's round trip, and the
    ledger is as strong as before (every mark is still its own durable commit, started the
    moment its 250 arrives; the next write waits for it)."""

    def __init__(self) -> None:
        self._task: asyncio.Future[None] | None = None

    def start(self, commit: Awaitable[None]) -> None:
        assert self._task is None, "settle() the previous mark first"
        self._task = asyncio.ensure_future(commit)

    async def settle(self) -> None:
        """Wait for the mark in flight (its database error, if any, is raised here); a
        cancellation meanwhile still lets it finish first."""
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await task
                raise


@dataclass
class _Counts:
    """What the batch did, for its result and the metrics."""

    accepted: int = 0  # the server's 250, recorded or not
    sent: int = 0
    failed: int = 0
    suppressed: int = 0  # failed at planning: the address is on the suppression list
    paced: int = 0  # skipped: their domain group's window for this minute is full
    paced_groups: set[str] = field(default_factory=set)
    deferred: int = 0
    unknown: int = 0  # the reply to the final dot never came: the message may be delivered
    meters: metrics.BatchCounters = field(default_factory=metrics.BatchCounters.for_this_activity)

    def count_failed(self, error_class: ErrorClass) -> None:
        """One recipient failed for good (in the ledger already)."""
        self.failed += 1
        self.meters.emails_failed(error_class)


@dataclass
class _Control:
    """What steers the batch while it runs: why to stop, what is held, what is in flight."""

    unrecorded: list[int] = field(default_factory=list)  # accepted, "sent" not yet committed
    lease_lost: bool = False  # written by the keep-alive task
    campaign_halted: bool = False  # the row left 'sending' (the playbook's SQL pause)
    stopped: bool = False
    failure: SmtpFailure | None = None
    retry_at: datetime | None = None
    unclear: _Held = field(default_factory=_Held)
    probes_left: int | None = None  # probing a run of unclear 4xx: how many tries remain
    backed_off: set[str] = field(default_factory=set)  # domains that wait: skipped here
    data_5xx: _Held = field(default_factory=_Held)
    recording: _Recording = field(default_factory=_Recording)


@dataclass
class _Tally:
    counts: _Counts = field(default_factory=_Counts)
    control: _Control = field(default_factory=_Control)


def unsubscribe_links(settings: Settings, target: Target) -> Links | None:
    """The message's List-Unsubscribe links (``None`` without MAILER_UNSUBSCRIBE_SECRET)."""
    if not settings.unsubscribe_key:
        return None
    return links(
        settings.unsubscribe_key,
        settings.unsubscribe_base_url,
        settings.unsubscribe_mailto,
        target,
    )


# How a batch whose plan holds no recipient ends: the limit the plan met names it.
EMPTY_PLAN_OUTCOMES: dict[BatchLimit, SendOutcome] = {
    BatchLimit.NONE: SendOutcome.COMPLETED,
    BatchLimit.QUOTA_OR_DAY: SendOutcome.BLOCKED,
    BatchLimit.RATE_SHARE: SendOutcome.RATE_LIMITED,
    BatchLimit.RETRY_WAIT: SendOutcome.RECIPIENTS_WAITING,
    BatchLimit.NOT_SENDING: SendOutcome.STOPPED,
    BatchLimit.DOMAIN_PACED: SendOutcome.DOMAIN_PACED,
}


def _delivered_outcome(
    tally: _Tally, now: datetime, granted: int, planned: int, window_used_up: bool
) -> SendOutcome:
    """How a batch that tried ``granted`` of its ``planned`` recipients ended."""
    if tally.control.failure is not None:
        return _OUTCOME_OF_FAILURE.get(tally.control.failure.error_class, SendOutcome.TRANSIENT)
    if tally.control.stopped:
        return SendOutcome.STOPPED
    if tally.counts.paced and tally.counts.paced == granted:
        # Every recipient it took is in a group paced this minute: try after it.
        tally.control.retry_at = minute_bounds(now)[1]
        return SendOutcome.DOMAIN_PACED
    # Saying so now spares the workflow a batch that would only find the window full.
    if granted < planned or window_used_up:
        return SendOutcome.RATE_LIMITED
    return SendOutcome.COMPLETED


async def _give_back(pool: MarksPool, taking: asyncio.Future[SentMarks]) -> None:
    """Hand the marks' connection being taken back to the pool, whatever becomes of it (the
    batch ends before its first message)."""
    with contextlib.suppress(Exception):
        await pool.give_back(await taking)


class BatchSender:
    """Sends batches for campaigns; one instance per worker (shares the engine and limiter)."""

    def __init__(self, settings: Settings, engine: Engine, limiter: RateLimiter) -> None:
        self.settings = settings
        self.engine = engine
        self.limiter = limiter
        self.old_engine = OldEngineWatch(limiter)
        self.retry_policy = RetryPolicy.of(settings)  # parsed once, not per refusal
        # One kept "sent" marks connection for each batch that may run at once.
        self.marks = MarksPool(settings.sqlalchemy_url, keep=settings.max_concurrent_activities)

    async def _db(self, fn: Callable[[], T]) -> T:
        """``fn`` (blocking database work) in a thread. A thread cannot be stopped: if we
        are cancelled meanwhile, it is let finish before the cancellation goes on, so the
        cleanup that follows never closes a connection under a statement still using it
        (which rolled a lease renewal back)."""
        return await _finish_even_if_cancelled(asyncio.to_thread(fn))

    async def send_batch(self, request: SendBatchInput, hooks: BatchHooks) -> SendBatchResult:
        campaign_id = uuid.UUID(request.campaign_id)
        url = self.settings.sqlalchemy_url
        now = hooks.now
        tally = _Tally()
        zones = self.settings.recipient_timezones
        if batch_is_stale(request.now, now, self._working_hours(), recipient_zones=zones):
            # Retried after the hour or the working day it was planned for: decide again.
            outcome = SendOutcome.STALE
        elif await self.old_engine.holds_lock():
            outcome = SendOutcome.OLD_ENGINE
        else:
            outcome = await self._run(request, campaign_id, hooks, tally)

        def snapshot() -> Snapshot:
            with session_scope(url) as session:
                return take_snapshot(session, campaign_id, now, self.settings)

        result = SendBatchResult(
            outcome=outcome,
            sent=tally.counts.sent,
            failed=tally.counts.failed + tally.counts.suppressed,
            snapshot=await self._db(snapshot),
            error=tally.control.failure.describe() if tally.control.failure else "",
            deferred=tally.counts.deferred,
            retry_at=tally.control.retry_at,
        )
        log.info(
            "campaign %s batch: %s, sent %d, failed %d, deferred %d%s",
            request.campaign_id,
            outcome,
            tally.counts.sent,
            tally.counts.failed,
            tally.counts.deferred,
            f" ({result.error})" if result.error else "",
        )
        return result

    def _working_hours(self) -> WorkingHours:
        settings = self.settings
        return WorkingHours(
            settings.timezone, settings.working_hours_start, settings.working_hours_end
        )

    async def _run(
        self, request: SendBatchInput, campaign_id: uuid.UUID, hooks: BatchHooks, tally: _Tally
    ) -> SendOutcome:
        """Claim the batch, keep the attempt alive while sending, then release the claims."""
        claim = Claim(
            hooks.attempt_token, timedelta(seconds=self.settings.send_heartbeat_timeout_seconds)
        )
        pacing = self.settings.domain_pacing
        full = await self.limiter.full_groups(hooks.now, pacing) if pacing else set()
        tally.counts.paced_groups |= full
        plan = partial(
            self._plan, campaign_id, hooks.now, request.max_messages, claim, pacing.domains_of(full)
        )
        batch = await _finish_even_if_cancelled(
            self._db(plan), undo=lambda _: self._release(claim, campaign_id, 0)
        )
        tally.counts.suppressed = batch.suppressed
        tally.counts.meters.emails_failed("suppressed", batch.suppressed)
        keepalive = asyncio.create_task(self._keep_alive(claim, campaign_id, hooks, tally))
        try:
            outcome = await self._send_planned(batch, hooks, tally)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            await self._release(claim, campaign_id, len(tally.control.unrecorded))
        if outcome == SendOutcome.COMPLETED and tally.counts.deferred:
            return await self._unless_only_waiting_left(campaign_id, hooks.now, claim, tally)
        return outcome

    async def _unless_only_waiting_left(
        self, campaign_id: uuid.UUID, now: datetime, claim: Claim, tally: _Tally
    ) -> SendOutcome:
        """A batch that deferred recipients (a 4xx about themselves) may have left only
        recipients that wait: then it says so with the first retry time, and the workflow
        sleeps until then instead of running a batch that would find none ready (one
        activity and one workflow task fewer per deferral, which counts at 10,000 campaigns)."""

        def first_retry() -> datetime | None:
            with session_scope(self.settings.sqlalchemy_url) as session:
                return first_retry_if_none_ready(session, campaign_id, now, claim)

        retry_at = await self._db(first_retry)
        if retry_at is None:
            return SendOutcome.COMPLETED
        tally.control.retry_at = retry_at
        return SendOutcome.RECIPIENTS_WAITING

    def _plan(
        self,
        campaign_id: uuid.UUID,
        now: datetime,
        max_messages: int,
        claim: Claim,
        skip_domains: list[str],
    ) -> BatchPlan:
        with session_scope(self.settings.sqlalchemy_url) as session:
            return plan_batch(
                session,
                campaign_id,
                now,
                max_messages,
                self.settings,
                claim,
                skip_domains=skip_domains,
                paced_until=minute_bounds(now)[1],
            )

    def _sent_in_hour(self, now: datetime) -> int:
        with session_scope(self.settings.sqlalchemy_url) as session:
            return sends_this_hour(session, now, self.settings.timezone)

    async def _release(self, claim: Claim, campaign_id: uuid.UUID, unrecorded: int) -> None:
        release = partial(
            release_claims, self.engine, claim.token, campaign_id=campaign_id, unrecorded=unrecorded
        )
        await self._db(release)

    async def _keep_alive(
        self, claim: Claim, campaign_id: uuid.UUID, hooks: BatchHooks, tally: _Tally
    ) -> None:
        """Heartbeat and renew the claims' lease on a clock of their own, so a slow SMTP
        exchange never looks like a dead worker (and never lets the lease run out); and
        watch the campaign's row, so an operator's SQL pause stops the batch between
        messages."""
        interval = min(KEEPALIVE_SECONDS, claim.lease.total_seconds() / 5)
        renew_every = claim.lease.total_seconds() / 3
        conn: Connection | None = None  # taken at the first beat: most batches end before it
        last_renewal = time.monotonic()
        try:
            while True:
                await asyncio.sleep(interval)
                hooks.heartbeat(tally.counts.sent, tally.counts.failed)
                # The batch's end cancels this task, often in the middle of a statement:
                # ``_db`` lets it finish before the connection is closed below.
                if conn is None:
                    conn = await self._db(self.engine.connect)
                status = await self._db(partial(campaign_status_now, conn, campaign_id))
                tally.control.campaign_halted = status != CampaignStatus.SENDING
                if time.monotonic() - last_renewal >= renew_every:
                    await self._db(partial(renew_claims, conn, claim.token, claim.lease))
                    last_renewal = time.monotonic()
        except Exception:
            # Without a lease another attempt may take these recipients: stop sending.
            tally.control.lease_lost = True
            log.exception("could not renew the batch's claims; stopping the batch")
        finally:
            if conn is not None:
                await self._db(conn.close)

    async def _send_planned(
        self, batch: BatchPlan, hooks: BatchHooks, tally: _Tally
    ) -> SendOutcome:
        if not batch.recipients:
            outcome = EMPTY_PLAN_OUTCOMES[batch.limited_by]
            if outcome in (SendOutcome.RECIPIENTS_WAITING, SendOutcome.DOMAIN_PACED):
                tally.control.retry_at = batch.retry_at
            return outcome
        tz, now = self.settings.timezone, hooks.now
        reservation = await _finish_even_if_cancelled(
            self.limiter.reserve(
                now,
                tz,
                self.settings.rate_per_hour,
                len(batch.recipients),
                sent_in_hour=lambda: self._db(partial(self._sent_in_hour, now)),
            ),
            undo=lambda r: self.limiter.release(now, tz, r.returnable(r.granted)),
        )
        granted = reservation.granted
        if granted == 0:
            return SendOutcome.RATE_LIMITED
        returned = 0
        try:
            await self._deliver_all(batch, batch.recipients[:granted], now, hooks, tally)
        finally:
            # A message the server accepted used its token, recorded or not (and one whose
            # outcome is unknown may have).
            counts = tally.counts
            unused = granted - counts.accepted - counts.failed - counts.unknown
            returned = reservation.returnable(unused)
            await self.limiter.release(now, tz, returned)
        # Tokens of recipients that wait (a 4xx, a paced or backed-off domain) went back: the
        # hour has room for the next recipients, so the workflow asks at once.
        window_used_up = (
            reservation.window_full or batch.limited_by == BatchLimit.RATE_SHARE
        ) and returned == 0
        planned = granted if returned else len(batch.recipients)
        return _delivered_outcome(tally, now, granted, planned, window_used_up)

    async def _deliver_all(
        self,
        batch: BatchPlan,
        recipients: list[RecipientView],
        now: datetime,
        hooks: BatchHooks,
        tally: _Tally,
    ) -> None:
        hooks.heartbeat(0, 0)
        # The batch's connections for its ledger writes, in autocommit: each write is a
        # single statement, its own transaction (one round trip instead of three). The "sent"
        # marks, one per email, have their own, written from the event loop; it is taken
        # from the worker's kept ones (or made) while the SMTP session opens.
        taking = asyncio.ensure_future(self.marks.take())
        try:
            smtp = await open_smtp(batch.account, self.settings.smtp_timeout_seconds)
        except BaseException as error:
            await _give_back(self.marks, taking)
            if not isinstance(error, SmtpSessionFailed):
                raise
            tally.control.failure = error.failure
            return
        async with contextlib.AsyncExitStack() as closing:  # closed in reverse order
            closing.push_async_callback(close_smtp, smtp)
            marks = await taking
            closing.push_async_callback(self.marks.give_back, marks)
            conn = await self._db(self._autocommit_connection)
            closing.push_async_callback(self._db, conn.close)
            try:
                await self._deliver_each(smtp, conn, marks, batch, recipients, now, hooks, tally)
            finally:
                await tally.control.recording.settle()
                if tally.control.failure is None:  # no run reached its threshold: each stands alone
                    await self._settle_held(conn, tally, now, probed_by=None)

    async def _deliver_each(
        self,
        smtp: aiosmtplib.SMTP,
        conn: Connection,
        marks: SentMarks,
        batch: BatchPlan,
        recipients: list[RecipientView],
        now: datetime,
        hooks: BatchHooks,
        tally: _Tally,
    ) -> None:
        """One message after another until the list is done or something stops the batch."""
        heartbeat = _Throttled(hooks.heartbeat)
        queue = deque(recipients)
        while (recipient := await self._take_next(queue, hooks, tally)) is not None:
            if not await self._paced_ok(recipient, now, tally):
                continue  # stays pending: its claim ends with the batch
            # The message in flight finishes and is recorded even if we are cancelled.
            delivery = asyncio.ensure_future(
                self._deliver_one(smtp, conn, marks, batch, recipient, now, tally)
            )
            try:
                await asyncio.shield(delivery)
            except asyncio.CancelledError:
                await delivery
                tally.control.stopped = True
                return
            heartbeat(tally.counts.sent, tally.counts.failed)
            if tally.control.failure is not None:
                return

    async def _take_next(
        self, queue: deque[RecipientView], hooks: BatchHooks, tally: _Tally
    ) -> RecipientView | None:
        """The next recipient to send to; None when the batch ends here (the list is done,
        the lease is lost, the workflow or the campaign's row says stop)."""
        control = tally.control
        probing = control.probes_left is not None
        recipient = next_recipient(
            queue,
            skip=control.backed_off,
            prefer_not=control.unclear.one_domain() if probing else None,
        )
        if recipient is None:
            return None
        if probing:
            await asyncio.sleep(PROBE_PAUSE_SECONDS)  # slower while probing
        if control.lease_lost:
            control.failure = LEASE_LOST
            return None
        if hooks.should_stop() or control.campaign_halted:
            control.stopped = True
            return None
        return recipient

    async def _paced_ok(self, recipient: RecipientView, now: datetime, tally: _Tally) -> bool:
        """Whether the recipient's domain group has a token left this minute (always, for
        a domain in no group); once a group is full, the rest of the batch skips it."""
        group = self.settings.domain_pacing.group_of(recipient.email)
        if group is None:
            return True
        if group.name not in tally.counts.paced_groups and await self.limiter.take_domain_token(
            now, group
        ):
            return True
        tally.counts.paced_groups.add(group.name)
        tally.counts.paced += 1
        return False

    def _autocommit_connection(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    async def _record_sent(
        self, marks: SentMarks, recipient_id: int, message_id: str, now: datetime, tally: _Tally
    ) -> None:
        await marks.record(recipient_id, message_id, now)
        tally.control.unrecorded.remove(recipient_id)
        tally.counts.sent += 1
        tally.counts.meters.email_sent()

    async def _deliver_one(
        self,
        smtp: aiosmtplib.SMTP,
        conn: Connection,
        marks: SentMarks,
        batch: BatchPlan,
        recipient: RecipientView,
        now: datetime,
        tally: _Tally,
    ) -> None:
        campaign = batch.campaign
        message_id = message_id_for(campaign.id, recipient.id, campaign.from_email)
        try:
            message = self._message_for(smtp, campaign, recipient, now)
            await send_message(
                smtp,
                message.sender,
                message.recipient,
                message.data,
                smtputf8=message.needs_smtputf8,
            )
        except OutcomeUnknown as exc:
            await tally.control.recording.settle()
            await self._outcome_unknown(conn, tally, campaign.id, recipient, message_id, exc, now)
            return
        except UnsendableMessage as exc:  # this recipient's data: never retried
            failure = SmtpFailure(ErrorClass.RECIPIENT, Stage.DATA, None, str(exc))
        except (UnicodeError, ValueError) as exc:  # what the SMTP client cannot encode
            failure = SmtpFailure(ErrorClass.RECIPIENT, Stage.MAIL, None, f"unsendable: {exc}")
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            failure = classify_exception(exc, Stage.MAIL)
        else:
            tally.counts.accepted += 1
            tally.control.unrecorded.append(recipient.id)
            await tally.control.recording.settle()
            await self._settle_held(conn, tally, now, probed_by=recipient.email)
            tally.control.recording.start(
                self._record_sent(marks, recipient.id, message_id, now, tally)
            )
            return
        await tally.control.recording.settle()
        refusal = Refusal(
            campaign_id=campaign.id,
            recipient_id=recipient.id,
            email=recipient.email,
            message_id=message_id,
            code=failure.code,
            error=failure.describe(redact=False),  # the database may hold addresses
            at=now,
            hard_bounce=is_hard_bounce(failure),
        )
        await self._refused(conn, tally, refusal, failure, now)

    def _message_for(
        self, smtp: aiosmtplib.SMTP, campaign: CampaignView, recipient: RecipientView, now: datetime
    ) -> BuiltMessage:
        """The recipient's message, addressed for what this server offers."""
        return build_message(
            campaign,
            recipient,
            now,
            server_smtputf8=smtp.supports_extension("smtputf8"),
            unsubscribe=unsubscribe_links(
                self.settings, Target(TargetKind.RECIPIENT, campaign.id, recipient.id)
            ),
            return_path=self.settings.return_path,
        )

    async def _refused(
        self, conn: Connection, tally: _Tally, refusal: Refusal, failure: SmtpFailure, now: datetime
    ) -> None:
        """Record, hold or escalate one recipient's refusal."""
        threshold = self.settings.circuit_breaker_threshold
        if failure.error_class == ErrorClass.RECIPIENT_DEFERRED:
            await self._temporary(conn, tally, refusal, failure, now)
            return
        # A server's 5xx to the message itself (not our own unsendable message).
        if (
            failure.error_class == ErrorClass.RECIPIENT
            and failure.stage == Stage.DATA
            and failure.code
        ):
            await self._settle_held(conn, tally, now, probed_by=refusal.email, data_5xx=False)
            tally.control.data_5xx.refusals.append(refusal)
            if len(tally.control.data_5xx.refusals) >= threshold:
                tally.control.failure = _run_failure(ErrorClass.CAMPAIGN, failure, threshold)
            return
        if failure.error_class == ErrorClass.RECIPIENT:
            await self._settle_held(conn, tally, now, probed_by=refusal.email)
            await self._db(lambda: record_failed(conn, refusal))
            tally.counts.count_failed(ErrorClass.RECIPIENT)
            return
        tally.control.failure = failure

    async def _temporary(
        self, conn: Connection, tally: _Tally, refusal: Refusal, failure: SmtpFailure, now: datetime
    ) -> None:
        """A 4xx about this recipient waits alone (its domain too, for a domain's trouble);
        an unclear one is held, and a run of them probed (UNCLEAR_RUN)."""
        control = tally.control
        if failure.temporary in (TemporaryKind.RECIPIENT, TemporaryKind.DOMAIN):
            # A reply that says what it is about: the server is not throttling the session.
            await self._settle_held(conn, tally, now, probed_by=refusal.email)
            await self._defer(conn, tally, refusal, failure.temporary)
            if failure.temporary == TemporaryKind.DOMAIN:
                await self._back_off(
                    conn, tally, refusal.campaign_id, domain_of(refusal.email), now
                )
            return
        await self._settle_held(conn, tally, now, probed_by=None, unclear=False)
        control.unclear.refusals.append(refusal)
        if control.probes_left is not None:  # a probe met the same: one try fewer
            control.probes_left -= 1
            if control.probes_left == 0:
                control.failure = _run_failure(
                    ErrorClass.TRANSIENT, failure, len(control.unclear.refusals), probed=True
                )
        elif len(control.unclear.refusals) >= UNCLEAR_RUN:
            control.probes_left = PROBES

    async def _defer(
        self, conn: Connection, tally: _Tally, refusal: Refusal, kind: TemporaryKind
    ) -> None:
        """The recipient waits its next retry step (or fails after its last)."""
        failed_for_good = await self._db(partial(record_deferred, conn, refusal, self.retry_policy))
        if failed_for_good:
            tally.counts.count_failed(ErrorClass.RECIPIENT_DEFERRED)
        else:
            tally.counts.deferred += 1
            tally.counts.meters.email_deferred(kind)

    async def _back_off(
        self, conn: Connection, tally: _Tally, campaign_id: uuid.UUID, domain: str, now: datetime
    ) -> None:
        """The campaign's recipients at ``domain`` wait the first retry step; this batch
        skips them (they stay pending, no attempt spent) while other domains go on."""
        if domain in tally.control.backed_off:
            return
        tally.control.backed_off.add(domain)
        until = now + timedelta(minutes=self.retry_policy.schedule_minutes[0])
        held = await self._db(
            partial(back_off_domain, conn, campaign_id, domain, until=until, at=now)
        )
        tally.counts.meters.domain_backed_off()
        log.info(
            "campaign %s: domain %s backed off until %s (%d recipients wait)",
            campaign_id,
            domain,
            until.isoformat(),
            held,
        )

    async def _outcome_unknown(
        self,
        conn: Connection,
        tally: _Tally,
        campaign_id: uuid.UUID,
        recipient: RecipientView,
        message_id: str,
        exc: OutcomeUnknown,
        now: datetime,
    ) -> None:
        """The connection failed after the final dot: the server may have the message. The
        recipient is tried once more after the longest retry step (same Message-ID), never
        a third time; the batch stops (the session is gone) as a transient error."""
        failure = SmtpFailure(ErrorClass.TRANSIENT, Stage.DATA, None, str(exc))
        refusal = Refusal(
            campaign_id=campaign_id,
            recipient_id=recipient.id,
            email=recipient.email,
            message_id=message_id,
            code=None,
            error=f"unknown: {exc}",
            at=now,
        )
        retry_after = now + timedelta(minutes=max(self.retry_policy.schedule_minutes))
        failed = await self._db(partial(record_unknown, conn, refusal, retry_after=retry_after))
        tally.counts.unknown += 1
        tally.counts.meters.outcome_unknown()
        if failed:
            tally.counts.count_failed(ErrorClass.TRANSIENT)
        tally.control.failure = failure

    async def _settle_held(
        self,
        conn: Connection,
        tally: _Tally,
        now: datetime,
        *,
        probed_by: str | None,
        unclear: bool = True,
        data_5xx: bool = True,
    ) -> None:
        """Record held refusals one by one: unclear 4xx ones wait their retry, 5xx ones
        fail. ``probed_by``: the recipient whose outcome broke the run; when the run was all
        one domain and that recipient is of another, the domain backs off as well."""
        control = tally.control
        run_domain = control.unclear.one_domain() if unclear else None
        held = control.unclear.take() if unclear else []
        for refusal in held:
            await self._defer(conn, tally, refusal, TemporaryKind.UNCLEAR)
        if unclear:
            probing, control.probes_left = control.probes_left is not None, None
            if (
                probing
                and held
                and run_domain is not None
                and probed_by is not None
                and domain_of(probed_by) != run_domain
            ):
                await self._back_off(conn, tally, held[0].campaign_id, run_domain, now)
        for refusal in control.data_5xx.take() if data_5xx else []:
            await self._db(partial(record_failed, conn, refusal))
            tally.counts.count_failed(ErrorClass.RECIPIENT)


async def _finish_even_if_cancelled(
    work: Awaitable[T], *, undo: Callable[[T], Awaitable[None]] | None = None
) -> T:
    """Await ``work`` (a reservation: claims, tokens; or a statement in a thread); if we are
    cancelled meanwhile, let it finish and ``undo`` it before the cancellation goes on, so
    nothing stays reserved and nothing still runs on a connection about to be closed."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        done = await task
        if undo is not None:
            await undo(done)
        raise


def _run_failure(
    error_class: ErrorClass, last: SmtpFailure, count: int, *, probed: bool = False
) -> SmtpFailure:
    """A run of refusals across different recipients, read as one session-level failure."""
    what = (
        "server-wide throttle"
        if error_class == ErrorClass.TRANSIENT
        else "the server is refusing the campaign"
    )
    how = " (probes included)" if probed else ""
    message = f"{count} different recipients refused in a row{how}: {what} (last: {last.message})"
    return SmtpFailure(error_class, last.stage, last.code, message)


LEASE_LOST = SmtpFailure(
    ErrorClass.TRANSIENT, Stage.DATA, None, "the batch's claims could not be renewed"
)

_OUTCOME_OF_FAILURE = {
    ErrorClass.CONFIGURATION: SendOutcome.CONFIGURATION,
    ErrorClass.CAMPAIGN: SendOutcome.SERVER_REFUSED,
}


class _Throttled:
    """Heartbeats at most every ``HEARTBEAT_EVERY`` seconds: the SDK throttles what it sends,
    but still does work for every call, which shows at hundreds of messages a second."""

    def __init__(self, heartbeat: Callable[[int, int], None]) -> None:
        self._heartbeat = heartbeat
        self._last = time.monotonic()

    def __call__(self, sent: int, failed: int) -> None:
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_EVERY:
            self._last = now
            self._heartbeat(sent, failed)
