"""notify's use cases: plain async functions, no FastAPI or faststream imports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from shared.domain.state_machine import RequestState
from shared.events import NotificationOutcome, RequestSubmitted, StatusChanged, notification_outcome_id

from .adapters import EmailSender, SendError, SmsGateway
from .domain import (
    URGENT_STATUSES,
    Channel,
    NotificationState,
    QuietHours,
    after_attempts,
    after_receipt,
    can_send,
    channels_for,
)
from .models import Contact, Notification
from .rendering import Renderer

log = logging.getLogger(__name__)

# A released SMS that failed with budget left is held again this long (the sweeper is its only sender).
RETRY_HELD_AFTER_S = 60

Sessions = async_sessionmaker[AsyncSession]
Send = Callable[[int], Awaitable[str]]


class ContactNotYetKnown(RuntimeError):
    """The status change came before its request's RequestSubmitted (another topic); redeliver it later."""


class DeliveryDeferred(RuntimeError):
    """A channel failed in a way that may pass and has budget left; redeliver the status change later."""


@dataclass(frozen=True)
class SendPolicy:
    """How hard notify tries: a few quick tries per delivery, a total budget across redeliveries."""

    tries_per_delivery: int = 3
    # Three deliveries' worth: spent before the dead-letter policy gives up on the message (five deliveries).
    attempt_budget: int = 9
    first_wait_s: float = 0.2
    max_wait_s: float = 2.0


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
    """Tell the applicant about a status change on each channel, at most once per (event, channel).

    Returns the channels sent in this call. Raises ContactNotYetKnown, or DeliveryDeferred when a channel
    failed in a retryable way (its row stays `created`, so a redelivery tries it and skips the sent ones).
    An SMS that can wait is held during the quiet hours: recorded with its text and `not_before`, and sent by
    `release_held` once they end.
    """
    async with sessions() as session:
        contact = await session.get(Contact, event.tracking_code)
    if contact is None:
        raise ContactNotYetKnown(f"no contact yet for {event.tracking_code}")
    sent: list[str] = []
    deferred: list[str] = []
    for channel in channels_for(has_email=contact.email is not None):
        send, body = _sender(channel, contact=contact, event=event, sms=sms, email=email, renderer=renderer)
        hold_until = None
        if channel is Channel.SMS and quiet is not None and event.status.value not in URGENT_STATUSES:
            hold_until = quiet.release_at(now())
        notification = await _claim(sessions, event, channel, not_before=hold_until, body=body)
        if not can_send(notification.state):
            continue
        if notification.not_before is not None:
            continue  # held for the quiet hours: release_held sends it
        state = await _deliver(sessions, notification, send, policy)
        if state is NotificationState.SENT:
            sent.append(channel.value)
        elif state is NotificationState.CREATED:
            deferred.append(channel.value)
    if deferred:
        raise DeliveryDeferred(f"{', '.join(deferred)} for {event.tracking_code} will be retried")
    return sent


def _sender(
    channel: Channel,
    *,
    contact: Contact,
    event: StatusChanged,
    sms: SmsGateway,
    email: EmailSender,
    renderer: Renderer,
) -> tuple[Send, str | None]:
    """Render first (a broken template fails before any row exists), then bind the send to a row id.

    Also returns the SMS text, kept on the row so a held SMS can be sent later without its event.
    """
    if channel is Channel.SMS:
        text = renderer.sms(language=contact.language, event=event)
        return _sms_sender(sms, contact.mobile, text), text
    content = renderer.email(language=contact.language, event=event)
    address = contact.email or ""

    async def send_email(notification_id: int) -> str:
        return await email.send(
            to=address,
            subject=content.subject,
            body=content.body,
            message_key=f"{event.event_id}.{channel.value}",
        )

    return send_email, None


def _sms_sender(sms: SmsGateway, mobile: str, text: str) -> Send:
    async def send_sms(notification_id: int) -> str:
        return await sms.send(receptor=mobile, message=text, local_id=str(notification_id))

    return send_sms


async def _claim(
    sessions: Sessions,
    event: StatusChanged,
    channel: Channel,
    *,
    not_before: datetime | None = None,
    body: str | None = None,
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
            body=body,
        )
        session.add(notification)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return (await session.exec(query)).one()
        return notification


async def _count_attempt(sessions: Sessions, notification_id: int) -> int:
    """Record an attempt before making it, so a crash mid-send still spends budget."""
    async with sessions() as session:
        row = await session.get(Notification, notification_id)
        if row is None:
            raise LookupError(f"notification {notification_id} vanished")
        row.attempts += 1
        session.add(row)
        await session.commit()
        return row.attempts


def _retryable(error: BaseException) -> bool:
    return isinstance(error, SendError) and error.retryable


async def _deliver(sessions: Sessions, notification: Notification, send: Send, policy: SendPolicy) -> NotificationState:
    """Send with a few quick retries, then record the outcome; returns the notification's new state."""
    if notification.id is None:
        raise RuntimeError("a notification must be committed before it is sent")
    notification_id = notification.id
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
    return await _finish(
        sessions, notification_id, budget=policy.attempt_budget, delivered=True, provider_id=provider_id
    )


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
    """Record how a round of attempts ended; a row another consumer already finished keeps its outcome."""
    async with sessions() as session:
        row = await session.get(Notification, notification_id)
        if row is None:
            raise LookupError(f"notification {notification_id} vanished")
        if not can_send(row.state):
            # A concurrent consumer (rebalance overlap) finished it first; its outcome stands.
            return NotificationState(row.state)
        state = after_attempts(
            row.state, delivered=delivered, retryable=retryable, attempts=row.attempts, budget=budget
        )
        row.state = state.value
        row.error = error[:500] if error else None
        if delivered:
            row.provider_message_id = provider_id
            row.sent_at = _utcnow()
        session.add(row)
        await session.commit()
    if delivered:
        log.info(
            "%s notification %d for %s sent",
            row.channel,
            notification_id,
            row.tracking_code,
            extra={"tracking_code": row.tracking_code},
        )
    return state


async def release_held(
    *,
    sessions: Sessions,
    sms: SmsGateway,
    policy: SendPolicy = SendPolicy(),
    now: Callable[[], datetime] = _utcnow,
    batch: int = 200,
) -> int:
    """Send the SMS held for the quiet hours whose time has come; returns how many went out."""
    moment = now()
    query = (
        select(Notification)
        .where(
            col(Notification.channel) == Channel.SMS.value,
            col(Notification.state) == NotificationState.CREATED.value,
            col(Notification.not_before).is_not(None),
            col(Notification.not_before) <= moment,
        )
        .order_by(col(Notification.not_before), col(Notification.id))
        .limit(batch)
    )
    async with sessions() as session:
        due = list((await session.exec(query)).all())
    sent = 0
    for row in due:
        if row.id is None or row.body is None or not await _take_held(sessions, row.id):
            continue  # another replica's sweeper took it
        async with sessions() as session:
            contact = await session.get(Contact, row.tracking_code)
        if contact is None:
            continue
        row.not_before = None
        state = await _deliver(sessions, row, _sms_sender(sms, contact.mobile, row.body), policy)
        if state is NotificationState.SENT:
            sent += 1
        elif state is NotificationState.CREATED:
            await _hold(sessions, row.id, moment + timedelta(seconds=RETRY_HELD_AFTER_S))  # budget left: later
    return sent


async def _hold(sessions: Sessions, notification_id: int, until: datetime) -> None:
    async with sessions() as session:
        await session.exec(update(Notification).where(col(Notification.id) == notification_id).values(not_before=until))
        await session.commit()


async def _take_held(sessions: Sessions, notification_id: int) -> bool:
    """Clear a held row's `not_before` if it is still set: exactly one sweeper wins the row."""
    async with sessions() as session:
        result = await session.exec(
            update(Notification)
            .where(col(Notification.id) == notification_id, col(Notification.not_before).is_not(None))
            .values(not_before=None)
        )
        await session.commit()
        return bool(result.rowcount)


async def apply_receipt(*, sessions: Sessions, local_id: str, message_id: str, receipt_status: str) -> str | None:
    """Record a gateway's delivery receipt; returns the notification's new state, or None when nothing changed.

    The gateway names the notification by the `localid` notify sent (its row id); a receipt whose message id
    is not the one recorded for that row (another message, or a forged one) changes nothing.
    """
    if not local_id.isdigit():
        return None
    async with sessions() as session:
        row = await session.get(Notification, int(local_id))
        if row is None or row.channel != Channel.SMS.value:
            return None
        if row.provider_message_id is not None and row.provider_message_id != message_id:
            return None
        new_state = after_receipt(row.state, receipt_status)
        if new_state is None:
            return None
        row.state = new_state.value
        if new_state is NotificationState.DELIVERED:
            row.provider_message_id = row.provider_message_id or message_id
            row.delivered_at = _utcnow()
        else:
            row.error = f"delivery receipt: {receipt_status}"[:500]
        session.add(row)
        await session.commit()
        return new_state.value


PUBLISHED_OUTCOMES = ("sent", "delivered", "failed")


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
        select(Notification)
        .where(
            col(Notification.state).in_(PUBLISHED_OUTCOMES),
            or_(
                col(Notification.outcome_published).is_(None),
                col(Notification.outcome_published) != col(Notification.state),
            ),
        )
        .order_by(col(Notification.id))
        .limit(batch)
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
                .values(outcome_published=row.state)
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
