"""notify's use cases: plain async functions, no FastAPI or faststream imports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from shared.domain.state_machine import RequestState
from shared.events import NotificationOutcome, RequestSubmitted, StatusChanged, notification_outcome_id

from .adapters import EmailSender, SendError, SmsGateway
from .adapters_templates import Renderer
from .domain import (
    FINAL_STATES,
    URGENT_STATUSES,
    Channel,
    NotificationState,
    QuietHours,
    after_attempts,
    after_receipt,
    can_send,
    channels_for,
)
from .store import Contact, Notification

log = logging.getLogger(__name__)

# What a round of sends ends in when the message went out (a delivery receipt may overtake the send's record).
WENT_OUT = frozenset({NotificationState.SENT, NotificationState.DELIVERED})
# A swept notification that failed with budget left waits this long for the next sweep.
RETRY_HELD_AFTER_S = 60
NOTIFICATIONS = Counter(
    "khedmat_notify_notifications_total",
    "Notifications that reached an outcome, by channel and outcome",
    ["channel", "outcome"],
)

Sessions = async_sessionmaker[AsyncSession]
Send = Callable[[int], Awaitable[str]]


class ContactNotYetKnown(RuntimeError):
    """The status change came before its request's RequestSubmitted (another topic); redeliver it later."""


class DeliveryDeferred(RuntimeError):
    """A channel failed in a way that may pass and has budget left; redeliver the status change later."""


class NotificationUndeliverable(RuntimeError):
    """A channel failed for good (a permanent error, or its attempt budget spent): dead-letter the message."""


@dataclass(frozen=True)
class SendPolicy:
    """How hard notify tries: a few quick tries per delivery, a total budget across redeliveries."""

    tries_per_delivery: int = 3
    # Three deliveries' worth; once spent the row is `failed` and its status change is dead-lettered with why.
    attempt_budget: int = 9
    first_wait_s: float = 0.2
    max_wait_s: float = 2.0
    # Longer than any round of tries can take (the composition root derives it from the send timeout), so a
    # live sender never loses its row; a dead sender's row waits this long for the sweeper.
    lease_s: float = 120.0
    # A `created` row this old, with no live lease, was left by a crashed sender: the sweeper sends it.
    stale_after_s: float = 120.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def record_contact(*, sessions: Sessions, event: RequestSubmitted) -> None:
    """Keep how to reach the applicant of a request (upsert: a replayed submission changes nothing)."""
    applicant = event.applicant
    async with sessions() as session:
        contact = await session.get(Contact, event.tracking_code)
        if contact is None:
            contact = Contact(tracking_code=event.tracking_code, mobile=applicant.mobile, service_id=event.service_id)
        contact.mobile = applicant.mobile
        contact.email = str(applicant.email) if applicant.email else None
        contact.language = applicant.language.value
        contact.channels = ",".join(applicant.notification_channels or ())
        contact.service_id = event.service_id
        session.add(contact)
        try:
            await session.commit()
        except IntegrityError:
            # Another consumer (a rebalance overlap) inserted the same contact first: same data, done.
            await session.rollback()


async def notify_status_change(
    *,
    sessions: Sessions,
    event: StatusChanged,
    sms: SmsGateway,
    email: EmailSender,
    renderer: Renderer,
    policy: SendPolicy = SendPolicy(),
    quiet: QuietHours | None = None,
    now: Callable[[], datetime] = _utcnow,
) -> list[str]:
    """Tell the applicant about a status change on each channel they chose, at most once per (event, channel).

    Returns the channels sent in this call. Raises ContactNotYetKnown; DeliveryDeferred when a channel failed
    in a way that may pass and has budget left (its row stays `created`, so a redelivery tries it and skips
    the sent ones); NotificationUndeliverable when a channel failed for good (the message is dead-lettered).
    An SMS that can wait is held during the quiet hours: recorded with `not_before`, sent by `sweep`.
    """
    async with sessions() as session:
        contact = await session.get(Contact, event.tracking_code)
    if contact is None:
        raise ContactNotYetKnown(f"no contact yet for {event.tracking_code}")
    sent: list[str] = []
    deferred: list[str] = []
    undeliverable: list[str] = []
    for channel in channels_for(has_email=contact.email is not None, preferred=preferred_channels(contact.channels)):
        hold_until = None
        if channel is Channel.SMS and quiet is not None and event.status.value not in URGENT_STATUSES:
            hold_until = quiet.release_at(now())
        content = _render(channel, contact, event, renderer)
        notification = await _claim(sessions, event, channel, content=content, not_before=hold_until)
        if not can_send(notification.state):
            if _failed_to_send(notification):
                undeliverable.append(f"{channel.value}: {notification.error or 'failed'}")
            continue
        if notification.not_before is not None:
            continue  # held for the quiet hours: the sweeper sends it
        send = _sender(notification, contact, sms, email, fallback=content)
        state = await _deliver(sessions, notification, send, policy, now=now)
        if state in WENT_OUT:
            sent.append(channel.value)
        elif state is NotificationState.CREATED:
            deferred.append(channel.value)
        elif state is NotificationState.FAILED:
            undeliverable.append(f"{channel.value}: {await _error_of(sessions, notification)}")
        # None: another sender holds the row's lease; it (or the sweeper, if it died) finishes the row.
    if deferred:
        raise DeliveryDeferred(f"{', '.join(deferred)} for {event.tracking_code} will be retried")
    if undeliverable:
        # No tracking code in the text: it is the record's key, and long digit runs are masked in DLQ reasons.
        raise NotificationUndeliverable("; ".join(undeliverable))
    return sent


def preferred_channels(stored: str) -> frozenset[Channel] | None:
    """The channels a contact row names ("sms,email"), or None when the citizen chose none (all of them)."""
    names = [name.strip() for name in stored.split(",") if name.strip()]
    return frozenset(Channel(name) for name in names) if names else None


def _failed_to_send(notification: Notification) -> bool:
    """Failed without ever being sent (not a failure a delivery receipt reported later)."""
    return notification.state == NotificationState.FAILED and notification.sent_at is None


async def _error_of(sessions: Sessions, notification: Notification) -> str:
    async with sessions() as session:
        row = await session.get(Notification, notification.id)
    return (row.error if row is not None else None) or "failed"


@dataclass(frozen=True)
class Rendered:
    """A notification's text as recorded on its row: the subject is for email only."""

    body: str
    subject: str | None = None


def _render(channel: Channel, contact: Contact, event: StatusChanged, renderer: Renderer) -> Rendered:
    """Render before any row exists, so a broken template fails the message rather than leaving a row."""
    if channel is Channel.SMS:
        return Rendered(body=renderer.sms(language=contact.language, event=event))
    content = renderer.email(language=contact.language, event=event)
    return Rendered(body=content.body, subject=content.subject)


def _sender(
    notification: Notification,
    contact: Contact,
    sms: SmsGateway,
    email: EmailSender,
    *,
    fallback: Rendered | None = None,
) -> Send:
    """The send of one recorded notification, from its row's text and the contact's current details.

    A row recorded by an earlier build kept no text: `fallback` (rendered from the event in hand) stands in.
    """
    body = notification.body or (fallback.body if fallback else "")
    if notification.channel == Channel.SMS:
        mobile = contact.mobile

        async def send_sms(notification_id: int) -> str:
            return await sms.send(receptor=mobile, message=body, local_id=str(notification_id))

        return send_sms
    address = contact.email or ""
    subject = notification.subject or (fallback.subject if fallback else None) or ""
    # Stable per notification: a resend after a lost reply carries the same Message-ID.
    message_key = f"{notification.status_event_id}.{notification.channel}"

    async def send_email(notification_id: int) -> str:
        return await email.send(to=address, subject=subject, body=body, message_key=message_key)

    return send_email


async def _claim(
    sessions: Sessions,
    event: StatusChanged,
    channel: Channel,
    *,
    content: Rendered,
    not_before: datetime | None = None,
) -> Notification:
    """The row for (event, channel), created and committed before anything is sent (persist, then send)."""
    query = select(Notification).where(
        col(Notification.status_event_id) == event.event_id, col(Notification.channel) == channel.value
    )
    async with sessions() as session:
        existing = (await session.exec(query)).first()
        if existing is not None:
            return existing
        notification = Notification(
            status_event_id=event.event_id,
            channel=channel.value,
            tracking_code=event.tracking_code,
            status=event.status.value,
            state=NotificationState.CREATED.value,
            not_before=not_before,
            subject=content.subject,
            body=content.body,
        )
        session.add(notification)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return (await session.exec(query)).one()
        return notification


async def _take(sessions: Sessions, notification_id: int, *, moment: datetime, lease_s: float) -> bool:
    """Take the row's send lease if it is still `created` and nobody holds a live lease: one sender wins."""
    async with sessions() as session:
        result = await session.exec(
            update(Notification)
            .where(
                col(Notification.id) == notification_id,
                col(Notification.state) == NotificationState.CREATED.value,
                or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) <= moment),
            )
            .values(lease_until=moment + timedelta(seconds=lease_s))
        )
        await session.commit()
        return bool(result.rowcount)


async def _count_attempt(sessions: Sessions, notification_id: int) -> None:
    """Record an attempt before making it, so a crash mid-send still spends budget (one UPDATE, no read)."""
    async with sessions() as session:
        await session.exec(
            update(Notification)
            .where(col(Notification.id) == notification_id)
            .values(attempts=col(Notification.attempts) + 1)
        )
        await session.commit()


def _retryable(error: BaseException) -> bool:
    return isinstance(error, SendError) and error.retryable


async def _deliver(
    sessions: Sessions,
    notification: Notification,
    send: Send,
    policy: SendPolicy,
    *,
    now: Callable[[], datetime] = _utcnow,
) -> NotificationState | None:
    """Take the lease, send with a few quick retries, record the outcome; returns the row's new state, or
    None when another sender holds the lease."""
    if notification.id is None:
        raise RuntimeError("a notification must be committed before it is sent")
    notification_id = notification.id
    if not await _take(sessions, notification_id, moment=now(), lease_s=policy.lease_s):
        return None
    tries = min(policy.tries_per_delivery, policy.attempt_budget - notification.attempts)
    if tries <= 0:
        return await _finish(
            sessions,
            notification_id,
            budget=policy.attempt_budget,
            delivered=False,
            error="attempt budget spent",
        )
    retrying = AsyncRetrying(
        stop=stop_after_attempt(tries),
        wait=wait_exponential_jitter(multiplier=policy.first_wait_s, jitter=policy.first_wait_s, max=policy.max_wait_s),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    provider_id: str | None = None
    try:
        async for attempt in retrying:
            with attempt:
                await _count_attempt(sessions, notification_id)
                provider_id = await send(notification_id)
    except SendError as error:
        log.warning(
            "%s notification %d for %s not sent (%s): %s",
            notification.channel,
            notification_id,
            notification.tracking_code,
            "retryable" if error.retryable else "permanent",
            error,
            extra={"tracking_code": notification.tracking_code},
        )
        return await _finish(
            sessions,
            notification_id,
            budget=policy.attempt_budget,
            delivered=False,
            retryable=error.retryable,
            error=str(error),
        )
    except BaseException:
        # Not a send failure (the database, a cancellation): give the lease back so a redelivery can retry
        # at once rather than after it runs out. Best effort: a crash leaves it to run out instead.
        await _release(sessions, notification_id)
        raise
    return await _finish(
        sessions, notification_id, budget=policy.attempt_budget, delivered=True, provider_id=provider_id
    )


async def _release(sessions: Sessions, notification_id: int, *, hold_until: datetime | None = None) -> None:
    """Give a row's lease back (still `created`); with `hold_until`, the sweeper leaves it until then."""
    values: dict[str, object] = {"lease_until": None}
    if hold_until is not None:
        values["not_before"] = hold_until
    async with sessions() as session:
        await session.exec(update(Notification).where(col(Notification.id) == notification_id).values(**values))
        await session.commit()


async def _finish(
    sessions: Sessions,
    notification_id: int,
    *,
    budget: int,
    delivered: bool,
    retryable: bool = False,
    provider_id: str | None = None,
    error: str | None = None,
) -> NotificationState:
    """Record how a round of attempts ended and give the lease back.

    The write is conditional on the state read (compare and set): a delivery receipt can land between the
    read and the write (the gateway posts it as soon as it accepts), and a plain read-modify-write would put
    the row back to `sent` over the receipt's `delivered`.
    """
    while True:
        async with sessions() as session:
            row = await session.get(Notification, notification_id)
            if row is None:
                raise LookupError(f"notification {notification_id} vanished")
            channel, tracking_code, seen = row.channel, row.tracking_code, row.state
            values: dict[str, object] = {"lease_until": None}
            if delivered:
                values["sent_at"] = _utcnow()
                values["provider_message_id"] = row.provider_message_id or provider_id
            if can_send(seen):
                state = after_attempts(
                    seen, delivered=delivered, retryable=retryable, attempts=row.attempts, budget=budget
                )
                values.update(state=state.value, error=error[:500] if error else None)
                if state in FINAL_STATES:
                    values["outcome_due"] = True
            else:
                # A delivery receipt overtook the send's own record: its outcome stands, the send is recorded.
                state = NotificationState(seen)
            result = await session.exec(
                update(Notification)
                .where(col(Notification.id) == notification_id, col(Notification.state) == seen)
                .values(**values)
            )
            await session.commit()
        if result.rowcount:
            break
    if delivered:
        NOTIFICATIONS.labels(channel, "sent").inc()
        log.info(
            "%s notification %d for %s sent",
            channel,
            notification_id,
            tracking_code,
            extra={"tracking_code": tracking_code},
        )
    elif state is NotificationState.FAILED:
        NOTIFICATIONS.labels(channel, "failed").inc()
    return state


async def sweep(
    *,
    sessions: Sessions,
    sms: SmsGateway,
    email: EmailSender,
    policy: SendPolicy = SendPolicy(),
    now: Callable[[], datetime] = _utcnow,
    batch: int = 200,
) -> int:
    """Send what was recorded but not sent: SMS held for the quiet hours once they end, and rows a crashed
    sender left `created` (older than `policy.stale_after_s`, with no live lease). Returns how many went out.

    A row whose round fails with budget left waits `RETRY_HELD_AFTER_S` for the next sweep.
    """
    moment = now()
    stale_before = moment - timedelta(seconds=policy.stale_after_s)
    query = (
        select(Notification)
        .where(
            col(Notification.state) == NotificationState.CREATED.value,
            or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) <= moment),
            or_(
                col(Notification.not_before) <= moment,
                and_(col(Notification.not_before).is_(None), col(Notification.created_at) <= stale_before),
            ),
        )
        .order_by(col(Notification.created_at), col(Notification.id))
        .limit(batch)
    )
    async with sessions() as session:
        due = list((await session.exec(query)).all())
    sent = 0
    for row in due:
        async with sessions() as session:
            contact = await session.get(Contact, row.tracking_code)
        if row.id is None or row.body is None or contact is None:
            continue  # recorded by a build that kept no text: its status change's redelivery sends it
        state = await _deliver(sessions, row, _sender(row, contact, sms, email), policy, now=now)
        if state in WENT_OUT:
            sent += 1
        elif state is NotificationState.CREATED:
            await _release(sessions, row.id, hold_until=moment + timedelta(seconds=RETRY_HELD_AFTER_S))
    if sent:
        log.info("sweeper sent %d notification(s) recorded earlier", sent)
    return sent


async def apply_receipt(*, sessions: Sessions, local_id: str, message_id: str, receipt_status: str) -> str | None:
    """Record a gateway's delivery receipt; returns the notification's new state, or None when nothing changed.

    The gateway names the notification by the `localid` notify sent (its row id); a receipt whose message id
    is not the one recorded for that row (another message, or a forged one) changes nothing. The write is
    conditional on the state read, as in `_finish`, so neither overwrites the other.
    """
    if not local_id.isdigit():
        return None
    while True:
        async with sessions() as session:
            row = await session.get(Notification, int(local_id))
            if row is None or row.channel != Channel.SMS.value:
                return None
            if row.provider_message_id is not None and row.provider_message_id != message_id:
                return None
            new_state = after_receipt(row.state, receipt_status)
            if new_state is None:
                return None
            values: dict[str, object] = {"state": new_state.value, "outcome_due": True}
            if new_state is NotificationState.DELIVERED:
                values["provider_message_id"] = row.provider_message_id or message_id
                values["delivered_at"] = _utcnow()
            else:
                values["error"] = f"delivery receipt: {receipt_status}"[:500]
            result = await session.exec(
                update(Notification)
                .where(col(Notification.id) == row.id, col(Notification.state) == row.state)
                .values(**values)
            )
            await session.commit()
        if result.rowcount:
            NOTIFICATIONS.labels(row.channel, new_state.value).inc()
            return new_state.value


async def publish_outcomes(
    *,
    sessions: Sessions,
    publish: Callable[[NotificationOutcome], Awaitable[object]],
    batch: int = 200,
    now: Callable[[], datetime] = _utcnow,
) -> int:
    """Publish each notification's new outcome on desk.notifications, then mark it published (at least once).

    The notification table is its own outbox: a row whose state is an outcome not yet published is published
    and then marked, so a crash in between publishes it again (with the same derived id) rather than never.
    """
    query = (
        select(Notification).where(col(Notification.outcome_due).is_(True)).order_by(col(Notification.id)).limit(batch)
    )
    async with sessions() as session:
        rows = list((await session.exec(query)).all())
    for row in rows:
        assert row.id is not None
        await publish(
            NotificationOutcome(
                event_id=notification_outcome_id(row.status_event_id, row.channel, row.state),
                tracking_code=row.tracking_code,
                occurred_at=now(),
                status_event_id=row.status_event_id,
                status=RequestState(row.status),
                channel=row.channel,
                state=row.state,
            )
        )
        async with sessions() as session:
            # Only if the state did not move meanwhile (a receipt): the newer state is published next round.
            await session.exec(
                update(Notification)
                .where(col(Notification.id) == row.id, col(Notification.state) == row.state)
                .values(outcome_due=False)
            )
            await session.commit()
    return len(rows)


async def list_notifications(*, sessions: Sessions, tracking_code: str) -> list[Notification] | None:
    """A request's notifications, oldest first; None when notify knows nothing of the request."""
    query = (
        select(Notification)
        .where(col(Notification.tracking_code) == tracking_code)
        .order_by(col(Notification.created_at), col(Notification.id))
    )
    async with sessions() as session:
        rows = list((await session.exec(query)).all())
        if not rows and await session.get(Contact, tracking_code) is None:
            return None
    return rows
