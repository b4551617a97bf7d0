"""notify's use cases: plain async functions, no FastAPI or faststream imports, no SQL (that is the store's)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from shared.access_audit import subject_digest
from shared.domain.digits import to_persian_digits
from shared.events import RequestSubmitted, StatusChanged

from .adapters import EmailSender, SendError, SmsGateway
from .adapters_templates import Renderer
from .domain import URGENT_STATUSES, Channel, NotificationState, QuietHours, can_send, channels_for
from .store import (
    Contact,
    RoundEnd,
    Sessions,
    claim_notification,
    count_attempt,
    error_of,
    find_contact,
    notifications_of,
    record_round,
    release_lease,
    save_contact,
    take_lease,
)

# The route answering with a request's rows names their type through the use case that returns them.
from .store import Notification as Notification

log = logging.getLogger(__name__)

# What a round of sends ends in when the message went out (a delivery receipt may overtake the send's record).
WENT_OUT = frozenset({NotificationState.SENT, NotificationState.DELIVERED})
NOTIFICATIONS = Counter(
    "khedmat_notify_notifications_total",
    "Notifications that reached an outcome, by channel and outcome",
    ["channel", "outcome"],
)

Send = Callable[[int], Awaitable[str]]


class ContactNotYetKnown(RuntimeError):
    """The status change came before its request's RequestSubmitted (another topic); redeliver it later."""


class DeliveryDeferred(RuntimeError):
    """A channel failed in a way that may pass and has budget left; redeliver the status change later."""


class NotificationUndeliverable(RuntimeError):
    """A channel failed for good (a permanent error, or its attempt budget spent): dead-letter the message."""


class SignInCodeNotSent(RuntimeError):
    """The SMS gateways could not take a sign-in code now."""


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


@dataclass
class Notify:
    """What notify's subscribers and routes depend on, built once by the composition root."""

    sessions: Sessions
    sms: SmsGateway
    email: EmailSender
    renderer: Renderer
    group_id: str = "notify"
    policy: SendPolicy = field(default_factory=SendPolicy)
    contact_wait_s: float = 10.0
    quiet: QuietHours | None = None
    # KHEDMAT_AUDIT_SUBJECT_KEY: contacts keep their applicant's subject digest (see record_contact).
    audit_key: bytes | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def record_contact(*, sessions: Sessions, event: RequestSubmitted, audit_key: bytes | None = None) -> None:
    """Keep how to reach the applicant of a request (upsert: a replayed submission changes nothing), and with
    `audit_key` their subject digest, under which reads of the request's notifications are recorded."""
    applicant = event.applicant
    await save_contact(
        sessions,
        tracking_code=event.tracking_code,
        mobile=applicant.mobile,
        email=str(applicant.email) if applicant.email else None,
        language=applicant.language.value,
        channels=",".join(applicant.notification_channels or ()),
        service_id=event.service_id,
        audit_subject=subject_digest(applicant.national_id, audit_key) if audit_key is not None else None,
    )


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
    contact = await find_contact(sessions, event.tracking_code)
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
        send = sender(notification, contact, sms, email, fallback=content)
        state = await deliver(sessions, notification, send, policy, now=now)
        if state in WENT_OUT:
            sent.append(channel.value)
        elif state is NotificationState.CREATED:
            deferred.append(channel.value)
        elif state is NotificationState.FAILED:
            assert notification.id is not None  # deliver refuses an uncommitted row
            undeliverable.append(f"{channel.value}: {await error_of(sessions, notification.id)}")
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


def sender(
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
    return await claim_notification(
        sessions,
        status_event_id=event.event_id,
        channel=channel,
        tracking_code=event.tracking_code,
        status=event.status.value,
        not_before=not_before,
        subject=content.subject,
        body=content.body,
    )


def _retryable(error: BaseException) -> bool:
    return isinstance(error, SendError) and error.retryable


def _retrying(policy: SendPolicy, tries: int) -> AsyncRetrying:
    """A few quick tries, backing off with jitter, retrying only what may pass."""
    return AsyncRetrying(
        stop=stop_after_attempt(tries),
        wait=wait_exponential_jitter(multiplier=policy.first_wait_s, jitter=policy.first_wait_s, max=policy.max_wait_s),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )


async def deliver(
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
    if not await take_lease(sessions, notification_id, moment=now(), lease_s=policy.lease_s):
        return None
    tries = min(policy.tries_per_delivery, policy.attempt_budget - notification.attempts)
    if tries <= 0:
        end = await record_round(
            sessions, notification_id, budget=policy.attempt_budget, delivered=False, error="attempt budget spent"
        )
        return _counted(end, notification_id, delivered=False)
    provider_id: str | None = None
    try:
        async for attempt in _retrying(policy, tries):
            with attempt:
                await count_attempt(sessions, notification_id)
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
        end = await record_round(
            sessions,
            notification_id,
            budget=policy.attempt_budget,
            delivered=False,
            retryable=error.retryable,
            error=str(error),
        )
        return _counted(end, notification_id, delivered=False)
    except BaseException:
        # Not a send failure (the database, a cancellation): give the lease back so a redelivery can retry
        # at once rather than after it runs out. Best effort: a crash leaves it to run out instead.
        await release_lease(sessions, notification_id)
        raise
    end = await record_round(
        sessions, notification_id, budget=policy.attempt_budget, delivered=True, provider_id=provider_id
    )
    return _counted(end, notification_id, delivered=True)


def _counted(end: RoundEnd, notification_id: int, *, delivered: bool) -> NotificationState:
    """Count and log how a round of attempts ended (recorded, the lease given back, by `record_round`)."""
    if delivered:
        NOTIFICATIONS.labels(end.channel, "sent").inc()
        log.info(
            "%s notification %d for %s sent",
            end.channel,
            notification_id,
            end.tracking_code,
            extra={"tracking_code": end.tracking_code},
        )
    elif end.state is NotificationState.FAILED:
        NOTIFICATIONS.labels(end.channel, "failed").inc()
    return end.state


async def list_notifications(*, sessions: Sessions, tracking_code: str) -> list[Notification] | None:
    """A request's notifications, oldest first; None when notify knows nothing of the request."""
    return await notifications_of(sessions, tracking_code)


async def audit_subject_of(*, sessions: Sessions, tracking_code: str) -> str | None:
    """The applicant's subject digest on desk.access, when notify was told it."""
    contact = await find_contact(sessions, tracking_code)
    return contact.audit_subject if contact is not None else None


async def text_sign_in_code(*, sms: SmsGateway, mobile: str, code: str) -> None:
    """Text identity's sign-in code to the mobile the registry tied to the citizen; nothing is stored, and neither
    the code nor the mobile is logged. Raises SignInCodeNotSent."""
    message = (
        f"میز خدمت: کد ورود شما {to_persian_digits(code)} است. آن را به هیچ‌کس ندهید.\n"
        f"Khedmat sign-in code: {code}. Do not share it."
    )
    try:
        await sms.send(receptor=mobile, message=message, local_id=str(uuid.uuid4()))
    except SendError as error:
        raise SignInCodeNotSent(str(error)) from error
