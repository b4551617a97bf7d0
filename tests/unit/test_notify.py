import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import select

from sandbox.sms_gateway import SmsOutbox, create_sms_gateway_app
from services.notify.adapters import (
    WIRE_POLICY,
    EmailSendError,
    KavenegarSmsClient,
    SmsSendError,
    SmtpEmailSender,
)
from services.notify.adapters_templates import Renderer, clip
from services.notify.app import create_app
from services.notify.consumers import handle_request_record, handle_status_record
from services.notify.domain import (
    IllegalTransition,
    NotificationState,
    after_attempts,
    can_send,
    channels_for,
    sms_length,
    sms_parts,
)
from services.notify.service import (
    ContactNotYetKnown,
    DeliveryDeferred,
    NotificationUndeliverable,
    Notify,
    SendPolicy,
    notify_status_change,
    record_contact,
)
from services.notify.service_sweeper import sweep
from services.notify.settings import DEV_INTERNAL_KEY, NotifySettings
from services.notify.store import Contact, Notification, Sessions, create_tables
from shared.db import make_engine
from shared.domain.identity import make_valid_national_id
from shared.domain.state_machine import RequestState
from shared.domain.tracking_code import TrackingCodeGenerator, format_for_display
from shared.events import (
    Applicant,
    InquiryCompleted,
    InquiryOutcome,
    Language,
    RequestSubmitted,
    StatusChanged,
)
from shared.http import PROBLEM_TYPE_BASE as PROBLEM_TYPE
from shared.kafka import PermanentError
from shared.keyed_consumer import KeyOrderedConsumer
from shared.settings import AuditSettings, DeploymentSettings
from shared.topics import Topic
from tests.asgi import asgi_client
from tests.unit.records import record_of

pytestmark = pytest.mark.asyncio

API_KEY = "s3cr3t-kavenegar-key-0123456789"
MOBILE = "09121234567"
SERVICE_ID = "birth-certificate-duplicate"
QUICK = SendPolicy(first_wait_s=0, max_wait_s=0)
LONG_SERVICE_FA = "صدور المثنی گواهی‌نامهٔ پایان خدمت وظیفهٔ عمومی و کارت معافیت دائم"
LONG_SERVICE_EN = "Issuance of a duplicate military service completion card and permanent exemption certificate"
LONG_REASON_FA = "مدارک هویتی بارگذاری‌شده با اطلاعات ثبت احوال مطابقت ندارد و تصویر شناسنامه ناخواناست"
LONG_REASON_EN = "The uploaded identity documents do not match the civil registry records and the scan is unreadable"

_codes = TrackingCodeGenerator(key=b"k" * 32, replica_id=1)


def new_code() -> str:
    return _codes.next_code()


def submitted(
    code: str,
    *,
    email: str | None = "citizen@example.ir",
    language: Language = Language.FA,
    accept_by: datetime | None = None,
    channels: tuple[Literal["sms", "email"], ...] | None = None,
) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=code,
        service_id=SERVICE_ID,
        catalog_version=1,
        agency="civil-registry",
        accept_by=accept_by or datetime.now(UTC) + timedelta(minutes=5),
        applicant=Applicant(
            national_id=make_valid_national_id("001234567"),
            mobile=MOBILE,
            email=email,
            birth_date=date(1990, 1, 31),
            language=language,
            notification_channels=channels,
        ),
    )


def status_changed(
    code: str,
    status: RequestState = RequestState.SUBMITTED,
    *,
    service_id: str = SERVICE_ID,
    reason_fa: str | None = None,
    reason_en: str | None = None,
) -> StatusChanged:
    return StatusChanged(
        tracking_code=code,
        caused_by="cause-1",
        caused_by_type="RequestSubmitted",
        service_id=service_id,
        agency="civil-registry",
        previous_status=None,
        status=status,
        reason_fa=reason_fa,
        reason_en=reason_en,
    )


@dataclass
class FakeSms:
    """Records every SMS; fails with the queued errors first."""

    sent: list[dict[str, str]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    calls: int = 0

    async def send(self, *, receptor: str, message: str, local_id: str) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append({"receptor": receptor, "message": message, "local_id": local_id})
        return f"sms-{len(self.sent)}"


@dataclass
class FakeEmail:
    """Records every email."""

    sent: list[dict[str, str]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(self, *, to: str, subject: str, body: str, message_key: str) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append({"to": to, "subject": subject, "body": body, "message_key": message_key})
        return f"<{message_key}@test>"


@pytest.fixture
def sessions(notify_sessions: Sessions) -> Sessions:
    return notify_sessions


@pytest.fixture
def sms() -> FakeSms:
    return FakeSms()


@pytest.fixture
def email() -> FakeEmail:
    return FakeEmail()


@pytest.fixture
def notify(sessions: Sessions, sms: FakeSms, email: FakeEmail, renderer: Renderer) -> Notify:
    return Notify(sessions=sessions, sms=sms, email=email, renderer=renderer, policy=QUICK, contact_wait_s=0)


async def contact(notify: Notify, event: RequestSubmitted | InquiryCompleted | dict[str, Any]) -> None:
    """Deliver one desk.requests record to notify's contacts handler."""
    await handle_request_record(notify, record_of(Topic.REQUESTS.value, event))


async def tell(notify: Notify, event: StatusChanged | dict[str, Any]) -> None:
    """Deliver one desk.status record to notify's status handler."""
    await handle_status_record(notify, record_of(Topic.STATUS.value, event))


async def notifications(sessions: Sessions, code: str) -> list[Notification]:
    async with sessions() as session:
        query = select(Notification).where(Notification.tracking_code == code)
        return list((await session.exec(query)).all())


# --- through the handlers -------------------------------------------------------------------------


async def test_both_topics_are_consumed_by_key_ordered_consumers(tmp_path: Path) -> None:
    """Concurrent across requests, in order within one, committing only what is done (no faststream subscriber)."""
    app = create_app(
        NotifySettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/n.db"), tracer_provider=TracerProvider()
    )
    bus = app.state.bus
    assert not bus.broker.subscribers
    assert all(isinstance(consumer, KeyOrderedConsumer) for consumer in bus.consumers)
    assert {(consumer.topic, consumer.group_id) for consumer in bus.consumers} == {
        ("desk.requests", "notify-contacts"),
        ("desk.status", "notify"),
    }


async def test_status_change_sends_one_sms_and_one_email(
    sms: FakeSms, email: FakeEmail, sessions: Sessions, notify: Notify
) -> None:
    code = new_code()
    await contact(notify, submitted(code))
    await tell(notify, status_changed(code))

    assert len(sms.sent) == 1
    assert len(email.sent) == 1
    assert sms.sent[0]["receptor"] == MOBILE
    assert format_for_display(code) in sms.sent[0]["message"]
    assert "صدور المثنی شناسنامه" in sms.sent[0]["message"]
    assert email.sent[0]["to"] == "citizen@example.ir"
    assert format_for_display(code) in email.sent[0]["subject"]
    rows = await notifications(sessions, code)
    assert {(row.channel, row.state, row.attempts) for row in rows} == {
        ("sms", "sent", 1),
        ("email", "sent", 1),
    }
    sms_row = next(row for row in rows if row.channel == "sms")
    assert sms.sent[0]["local_id"] == str(sms_row.id)
    assert sms_row.provider_message_id == "sms-1"
    assert sms_row.sent_at is not None


async def test_redelivered_status_change_sends_nothing(
    sms: FakeSms, email: FakeEmail, sessions: Sessions, notify: Notify
) -> None:
    code = new_code()
    change = status_changed(code, RequestState.APPROVED)
    await contact(notify, submitted(code))
    await tell(notify, change)
    await tell(notify, change)
    # A replayed submission must not disturb anything either.
    await contact(notify, submitted(code))
    await tell(notify, change)

    assert len(sms.sent) == 1
    assert len(email.sent) == 1
    assert len(await notifications(sessions, code)) == 2


async def test_each_status_change_is_told(sms: FakeSms, notify: Notify) -> None:
    code = new_code()
    await contact(notify, submitted(code, email=None))
    await tell(notify, status_changed(code, RequestState.SUBMITTED))
    await tell(notify, status_changed(code, RequestState.VERIFYING))
    assert len(sms.sent) == 2
    assert "ثبت شد" in sms.sent[0]["message"]
    assert "استعلام" in sms.sent[1]["message"]


async def test_no_email_when_contact_has_none(
    sms: FakeSms, email: FakeEmail, sessions: Sessions, notify: Notify
) -> None:
    code = new_code()
    await contact(notify, submitted(code, email=None))
    await tell(notify, status_changed(code))

    assert len(sms.sent) == 1
    assert email.sent == []
    assert [row.channel for row in await notifications(sessions, code)] == ["sms"]


async def test_english_applicant_gets_english_text(sms: FakeSms, email: FakeEmail, notify: Notify) -> None:
    code = new_code()
    await contact(notify, submitted(code, language=Language.EN))
    await tell(
        notify,
        status_changed(code, RequestState.REJECTED, reason_fa="مدارک ناقص است", reason_en="Documents missing"),
    )
    assert "Duplicate birth certificate" in sms.sent[0]["message"]
    assert "Documents missing" in sms.sent[0]["message"]
    assert "Documents missing" in email.sent[0]["body"]
    assert "rejected" in email.sent[0]["subject"]


async def test_other_request_events_are_ignored(sms: FakeSms, sessions: Sessions, notify: Notify) -> None:
    code = new_code()
    inquiry = InquiryCompleted(
        tracking_code=code,
        caused_by="cause-1",
        inquiry="identity",
        agency="civil-registry",
        outcome=InquiryOutcome.PASSED,
    )
    await contact(notify, inquiry)
    await contact(notify, {"event_type": "SomethingAddedLater", "tracking_code": code})
    await tell(notify, {"event_type": "SomethingAddedLater", "tracking_code": code})
    assert sms.sent == []
    async with sessions() as session:
        assert (await session.exec(select(Notification))).all() == []


async def test_submission_appended_after_accept_by_is_not_kept(
    sms: FakeSms, sessions: Sessions, notify: Notify
) -> None:
    code = new_code()
    late = submitted(code, accept_by=datetime.now(UTC) - timedelta(seconds=1))
    await contact(notify, late)
    with pytest.raises(ContactNotYetKnown):
        await tell(notify, status_changed(code))
    async with sessions() as session:
        assert await session.get(Contact, code) is None
    assert sms.sent == []


async def test_status_change_before_its_contact_is_retried(sms: FakeSms, sessions: Sessions, notify: Notify) -> None:
    code = new_code()
    change = status_changed(code)
    with pytest.raises(ContactNotYetKnown):
        await tell(notify, change)
    assert sms.sent == []
    await contact(notify, submitted(code))
    await tell(notify, change)
    assert len(sms.sent) == 1


# --- use cases ------------------------------------------------------------------------------------


async def test_record_contact_is_an_idempotent_upsert(sessions: Sessions) -> None:
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    await record_contact(sessions=sessions, event=submitted(code, email="later@example.ir"))
    async with sessions() as session:
        contacts = (await session.exec(select(Contact))).all()
    assert [(c.tracking_code, c.mobile, c.email, c.language) for c in contacts] == [
        (code, MOBILE, "later@example.ir", "fa")
    ]


async def test_unknown_contact_raises_retryable(sessions: Sessions, renderer: Renderer) -> None:
    with pytest.raises(ContactNotYetKnown) as raised:
        await notify_status_change(
            sessions=sessions,
            event=status_changed(new_code()),
            sms=FakeSms(),
            email=FakeEmail(),
            renderer=renderer,
        )
    assert isinstance(raised.value, RuntimeError)
    assert not isinstance(raised.value, ValueError)


async def test_retryable_failure_defers_and_resends_only_that_channel(sessions: Sessions, renderer: Renderer) -> None:
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code))
    sms = FakeSms(failures=[SmsSendError("gateway down", retryable=True)] * 3)
    email = FakeEmail()
    change = status_changed(code)

    with pytest.raises(DeliveryDeferred):
        await notify_status_change(
            sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=QUICK
        )
    rows = {row.channel: row for row in await notifications(sessions, code)}
    assert (rows["sms"].state, rows["sms"].attempts) == ("created", 3)
    assert rows["sms"].error == "gateway down"
    assert rows["email"].state == "sent"

    sent = await notify_status_change(
        sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=QUICK
    )
    assert sent == ["sms"]
    assert len(sms.sent) == 1
    assert len(email.sent) == 1
    rows = {row.channel: row for row in await notifications(sessions, code)}
    assert (rows["sms"].state, rows["sms"].attempts, rows["sms"].error) == ("sent", 4, None)


async def test_permanent_failure_is_final_and_dead_letters_its_change(sessions: Sessions, renderer: Renderer) -> None:
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    sms = FakeSms(failures=[SmsSendError("sms gateway answered 411/411: invalid receptor", retryable=False)])
    change = status_changed(code)

    for _ in range(2):  # a redelivery sends nothing and says the same
        with pytest.raises(NotificationUndeliverable, match="sms: sms gateway answered 411/411: invalid receptor"):
            await notify_status_change(
                sessions=sessions, event=change, sms=sms, email=FakeEmail(), renderer=renderer, policy=QUICK
            )
    assert sms.calls == 1
    [row] = await notifications(sessions, code)
    assert (row.state, row.attempts, row.outcome_due) == ("failed", 1, True)


async def test_spent_budget_ends_in_failed(sessions: Sessions, renderer: Renderer) -> None:
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    policy = SendPolicy(tries_per_delivery=2, attempt_budget=3, first_wait_s=0, max_wait_s=0)
    sms = FakeSms(failures=[SmsSendError("timeout", retryable=True)] * 10)
    change = status_changed(code)

    with pytest.raises(DeliveryDeferred):
        await notify_status_change(
            sessions=sessions, event=change, sms=sms, email=FakeEmail(), renderer=renderer, policy=policy
        )
    # The second delivery has one try left in the budget; spending it ends the notification.
    for _ in range(2):
        with pytest.raises(NotificationUndeliverable, match="sms: timeout"):
            await notify_status_change(
                sessions=sessions, event=change, sms=sms, email=FakeEmail(), renderer=renderer, policy=policy
            )
    assert sms.calls == 3
    [row] = await notifications(sessions, code)
    assert (row.state, row.attempts) == ("failed", 3)


async def test_undeliverable_change_is_a_permanent_error_for_the_consumer(notify: Notify, sms: FakeSms) -> None:
    """The handler turns it into PermanentError, which the consumer dead-letters at once, with the reason."""
    code = new_code()
    await record_contact(sessions=notify.sessions, event=submitted(code, email=None))
    sms.failures = [SmsSendError("sms gateway answered 411/411: invalid receptor", retryable=False)]
    with pytest.raises(PermanentError, match=r"^sms: sms gateway answered 411/411"):
        await tell(notify, status_changed(code))


async def test_a_preference_for_email_only_sends_no_sms(notify: Notify, sms: FakeSms, email: FakeEmail) -> None:
    code = new_code()
    await record_contact(sessions=notify.sessions, event=submitted(code, channels=("email",)))
    await tell(notify, status_changed(code))
    assert sms.sent == [] and len(email.sent) == 1
    other = new_code()
    await record_contact(sessions=notify.sessions, event=submitted(other, channels=("sms",)))
    await tell(notify, status_changed(other))
    assert len(sms.sent) == 1 and len(email.sent) == 1


async def test_a_row_a_crashed_sender_left_is_swept_once(sessions: Sessions, renderer: Renderer) -> None:
    """A row recorded, leased and never finished (SIGKILL mid-send): nobody sends it while the lease lives; the
    sweeper sends it once the row is stale and the lease has run out, and a redelivery then sends nothing."""
    code = new_code()
    # Email only: the sweeper sends SMS too (the quiet-hours tests), and email has no gateway-side dedupe.
    await record_contact(sessions=sessions, event=submitted(code, channels=("email",)))
    change = status_changed(code)
    sms, email = FakeSms(), FakeEmail(failures=[RuntimeError("killed")])
    policy = SendPolicy(first_wait_s=0, max_wait_s=0, lease_s=60, stale_after_s=30)
    start = datetime.now(UTC)
    with pytest.raises(RuntimeError):
        await notify_status_change(
            sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=policy, now=lambda: start
        )
    async with sessions() as session:  # as if the process died before giving the lease back
        await session.exec(update(Notification).values(lease_until=start + timedelta(seconds=60)))
        await session.commit()

    assert await sweep(sessions=sessions, sms=sms, email=email, policy=policy, now=lambda: start) == 0
    at_31s = start + timedelta(seconds=31)
    assert await sweep(sessions=sessions, sms=sms, email=email, policy=policy, now=lambda: at_31s) == 0  # leased
    # A redelivery while the lease lives leaves the row to its holder (or, if it died, to the sweeper).
    assert (
        await notify_status_change(
            sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=policy, now=lambda: at_31s
        )
        == []
    )
    at_61s = start + timedelta(seconds=61)
    swept = await asyncio.gather(
        *(sweep(sessions=sessions, sms=sms, email=email, policy=policy, now=lambda: at_61s) for _ in range(2))
    )
    assert sum(swept) == 1 and len(email.sent) == 1
    assert email.sent[0]["message_key"] == f"{change.event_id}.email"
    assert (
        await notify_status_change(
            sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=policy
        )
        == []
    )
    assert sms.sent == [] and len(email.sent) == 1
    assert [row.state for row in await notifications(sessions, code)] == ["sent"]


# --- domain ---------------------------------------------------------------------------------------


async def test_channels() -> None:
    assert channels_for(has_email=False) == ["sms"]
    assert channels_for(has_email=True) == ["sms", "email"]


async def test_lifecycle_never_leaves_a_final_state() -> None:
    assert can_send("created")
    assert not can_send("sent")
    assert not can_send("failed")
    for final in ("sent", "failed"):
        with pytest.raises(IllegalTransition):
            after_attempts(final, delivered=True, retryable=False, attempts=1, budget=9)
    assert after_attempts("created", delivered=True, retryable=False, attempts=1, budget=9) is NotificationState.SENT
    assert after_attempts("created", delivered=False, retryable=False, attempts=1, budget=9) == "failed"
    assert after_attempts("created", delivered=False, retryable=True, attempts=3, budget=9) == "created"
    assert after_attempts("created", delivered=False, retryable=True, attempts=9, budget=9) == "failed"


async def test_sms_parts() -> None:
    assert sms_parts("a" * 160) == 1
    assert sms_parts("a" * 161) == 2
    assert sms_length("{}") == (4, False)
    assert sms_parts("س" * 70) == 1
    assert sms_parts("س" * 71) == 2
    assert sms_parts("س" * 134) == 2
    assert sms_parts("س" * 135) == 3


async def test_clip() -> None:
    assert clip("short", 10) == "short"
    assert clip("one two three four five", 12) == "one two..."
    assert len(clip("س" * 50, 20)) == 20
    assert clip("س" * 50, 20).endswith("…")


# --- templates ------------------------------------------------------------------------------------


class _NoCatalog:
    def get(self, service_id: str) -> None:
        return None


@pytest.mark.parametrize("status", list(RequestState))
@pytest.mark.parametrize("with_reason", [False, True])
async def test_every_sms_template_within_budget(status: RequestState, with_reason: bool) -> None:
    # No catalog entry: the long "service id" is then shown as the name, the worst case for length.
    renderer = Renderer(_NoCatalog())  # type: ignore[arg-type]
    code = new_code()
    reasons = {"reason_fa": LONG_REASON_FA, "reason_en": LONG_REASON_EN} if with_reason else {}
    persian = renderer.sms(language="fa", event=status_changed(code, status, service_id=LONG_SERVICE_FA, **reasons))
    english = renderer.sms(language="en", event=status_changed(code, status, service_id=LONG_SERVICE_EN, **reasons))

    assert len(persian) <= 134, persian
    assert sms_parts(persian) <= 2
    assert sms_length(english) == (len(english), False), "English SMS must stay in the GSM-7 alphabet"
    assert sms_parts(english) <= 2
    for text in (persian, english):
        assert format_for_display(code) in text
    if with_reason and status in (RequestState.REJECTED, RequestState.NEEDS_CORRECTION):
        assert LONG_REASON_FA[:10] in persian
        assert LONG_REASON_EN[:10] in english


@pytest.mark.parametrize("status", list(RequestState))
async def test_every_email_template_renders(renderer: Renderer, status: RequestState) -> None:
    code = new_code()
    event = status_changed(code, status, reason_fa="مدارک ناقص است", reason_en="Documents missing")
    for language, name, reason in (
        ("fa", "صدور المثنی شناسنامه", "مدارک ناقص است"),
        ("en", "Duplicate", "missing"),
    ):
        content = renderer.email(language=language, event=event)
        assert "\n" not in content.subject
        assert format_for_display(code) in content.subject
        assert format_for_display(code) in content.body
        assert name in content.body
        assert reason in content.body


async def test_unknown_language_falls_back_to_persian(renderer: Renderer) -> None:
    assert "کد رهگیری" in renderer.sms(language="xx", event=status_changed(new_code()))


# --- SMS client -----------------------------------------------------------------------------------


def _gateway(status: int, payload: dict[str, Any]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload)

    return httpx.MockTransport(handler)


def _client(transport: httpx.AsyncBaseTransport) -> KavenegarSmsClient:
    return KavenegarSmsClient(
        base_url="http://sms.test", api_key=API_KEY, sender="10004346", timeout_s=1.0, transport=transport
    )


async def test_sms_client_sends_form_and_returns_message_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"return": {"status": 200, "message": "ok"}, "entries": [{"messageid": 42}]})

    client = _client(httpx.MockTransport(handler))
    try:
        assert await client.send(receptor=MOBILE, message="سلام", local_id="7") == "42"
    finally:
        await client.aclose()
    assert seen[0].url.path == f"/v1/{API_KEY}/sms/send.json"
    form = dict(httpx.QueryParams(seen[0].content.decode()))
    assert form == {"receptor": MOBILE, "message": "سلام", "sender": "10004346", "localid": "7"}


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (409, True), (401, False), (411, False), (301, False)],
)
async def test_sms_client_never_leaks_the_api_key(status: int, retryable: bool) -> None:
    payload = {"return": {"status": status, "message": f"bad key {API_KEY} for {MOBILE}"}}
    client = _client(_gateway(status, payload))
    try:
        with pytest.raises(SmsSendError) as raised:
            await client.send(receptor=MOBILE, message="x", local_id="1")
    finally:
        await client.aclose()
    error = raised.value
    assert error.retryable is retryable
    assert API_KEY not in str(error)
    assert MOBILE not in str(error)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


async def test_sms_client_connection_errors_are_retryable_and_scrubbed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out on {request.url}", request=request)

    for handler in (refuse, slow):
        client = _client(httpx.MockTransport(handler))
        try:
            with pytest.raises(SmsSendError) as raised:
                await client.send(receptor=MOBILE, message="x", local_id="1")
        finally:
            await client.aclose()
        assert raised.value.retryable
        assert API_KEY not in str(raised.value)


async def test_sms_client_against_the_sandbox_gateway() -> None:
    outbox = SmsOutbox()
    gateway = httpx.ASGITransport(app=create_sms_gateway_app(api_keys={API_KEY}, outbox=outbox))
    client = _client(gateway)
    try:
        message_id = await client.send(receptor=MOBILE, message="درخواست ثبت شد", local_id="17")
        wrong_key = KavenegarSmsClient(
            base_url="http://sms.test",
            api_key="wrong-key",
            sender="10004346",
            timeout_s=1.0,
            transport=gateway,
        )
        with pytest.raises(SmsSendError) as refused:
            await wrong_key.send(receptor=MOBILE, message="x", local_id="18")
        await wrong_key.aclose()
    finally:
        await client.aclose()
    [accepted] = outbox.list()
    assert str(accepted.messageid) == message_id
    assert (accepted.receptor, accepted.message, accepted.localid) == (MOBILE, "درخواست ثبت شد", "17")
    assert not refused.value.retryable
    assert "wrong-key" not in str(refused.value)


async def test_sms_client_keeps_the_key_out_of_logs_and_spans(caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = _client(_gateway(200, {"return": {"status": 200}, "entries": [{"messageid": 1}]}))
    HTTPXClientInstrumentor.instrument_client(client.http, tracer_provider=provider, request_hook=client.redact_span)
    try:
        with caplog.at_level(logging.DEBUG):
            await client.send(receptor=MOBILE, message="x", local_id="1")
    finally:
        await client.aclose()
    spans = exporter.get_finished_spans()
    assert spans
    for span in spans:
        assert all(API_KEY not in str(value) for value in (span.attributes or {}).values())
    assert any("REDACTED" in str(value) for span in spans for value in (span.attributes or {}).values())
    assert "HTTP Request" in caplog.text
    assert API_KEY not in caplog.text


# --- SMTP sender ----------------------------------------------------------------------------------


def _smtp(tracer_provider: TracerProvider | None = None) -> SmtpEmailSender:
    return SmtpEmailSender(
        host="127.0.0.1",
        port=2525,
        mail_from="no-reply@khedmat.example",
        starttls=False,
        timeout_s=1.0,
        tracer=tracer_provider.get_tracer("notify") if tracer_provider else None,
    )


async def test_email_message_headers() -> None:
    message = _smtp().build(to="citizen@example.ir", subject="درخواست ثبت شد", body="سلام\n", message_key="e1.email")
    assert message["From"] == "no-reply@khedmat.example"
    assert message["To"] == "citizen@example.ir"
    assert message["Subject"] == "درخواست ثبت شد"
    assert message["Message-ID"] == "<e1.email@khedmat.example>"
    assert message["Date"]
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "سلام\n"


async def test_email_wire_form_keeps_persian_subject_intact() -> None:
    subject = "میز خدمت: درخواست «صدور المثنی شناسنامه» ثبت شد — کد رهگیری 00221-96207-22347"
    message = _smtp().build(to="citizen@example.ir", subject=subject, body="سلام دنیا\n", message_key="k")
    wire = message.as_bytes(policy=WIRE_POLICY)
    assert wire.isascii()
    assert all(len(line) <= 78 for line in wire.split(b"\r\n"))
    parsed = message_from_bytes(wire, policy=default_policy)
    assert parsed["Subject"] == subject
    assert parsed.get_content() == "سلام دنیا\n"


async def test_smtp_send_is_traced_without_personal_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiosmtplib

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    calls: list[dict[str, Any]] = []

    async def fake_send(message: Any, **kwargs: Any) -> tuple[dict[str, Any], str]:
        calls.append({"message": message, **kwargs})
        if len(calls) > 1:
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "<citizen@example.ir> unknown", "citizen@example.ir")]
            )
        return {}, "OK"

    monkeypatch.setattr(aiosmtplib, "send", fake_send)
    sender = _smtp(provider)
    assert await sender.send(to="citizen@example.ir", subject="s", body="b", message_key="k") == "<k@khedmat.example>"
    assert calls[0]["start_tls"] is False
    assert (calls[0]["sender"], calls[0]["recipients"]) == (
        "no-reply@khedmat.example",
        ["citizen@example.ir"],
    )
    assert isinstance(calls[0]["message"], bytes)
    with pytest.raises(EmailSendError) as raised:
        await sender.send(to="citizen@example.ir", subject="s", body="b", message_key="k")
    assert not raised.value.retryable
    assert "citizen@example.ir" not in str(raised.value)

    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["smtp send", "smtp send"]
    assert spans[0].attributes == {
        "server.address": "127.0.0.1",
        "server.port": 2525,
        "network.transport": "tcp",
    }
    assert "citizen@example.ir" not in str([span.to_json() for span in spans])


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ConnectionRefusedError("refused"), True),
        ("connect", True),
        ("busy", True),
        ("rejected", False),
        ("no-starttls", False),
    ],
)
async def test_smtp_errors_are_classified(monkeypatch: pytest.MonkeyPatch, error: Any, retryable: bool) -> None:
    import aiosmtplib

    errors: dict[str, Exception] = {
        "connect": aiosmtplib.SMTPConnectError("no route"),
        "busy": aiosmtplib.SMTPResponseException(451, "try again later"),
        "rejected": aiosmtplib.SMTPDataError(554, "message for someone@example.ir rejected"),
        "no-starttls": aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
    }
    raised_error = errors.get(error, error) if isinstance(error, str) else error

    async def fake_send(message: Any, **kwargs: Any) -> None:
        raise raised_error  # type: ignore[misc]

    monkeypatch.setattr(aiosmtplib, "send", fake_send)
    with pytest.raises(EmailSendError) as raised:
        await _smtp().send(to="someone@example.ir", subject="s", body="b", message_key="k")
    assert raised.value.retryable is retryable
    assert "someone@example.ir" not in str(raised.value)


# --- settings and HTTP ----------------------------------------------------------------------------


async def test_placeholder_sms_key_refused_outside_local_and_test() -> None:
    assert NotifySettings().port == 8084
    NotifySettings(deployment=DeploymentSettings(deployment_environment="test"))
    with pytest.raises(ValidationError):
        NotifySettings(deployment=DeploymentSettings(deployment_environment="production"))
    with pytest.raises(ValidationError, match="NOTIFY_INTERNAL_KEY"):
        NotifySettings(deployment=DeploymentSettings(deployment_environment="production"), sms_api_key="a-real-secret")
    NotifySettings(
        deployment=DeploymentSettings(deployment_environment="production"),
        sms_api_key="a-real-secret",
        internal_key="another-real-secret",
        receipt_token="a-third-real-secret",
        audit=AuditSettings(subject_key="a-fourth-real-secret"),
    )


async def test_notifications_route_lists_without_contact_details(tmp_path: Path) -> None:
    settings = NotifySettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/api.db")
    app = create_app(settings, tracer_provider=TracerProvider())
    deps: Notify = app.state.notify
    engine = make_engine(settings.database_url)
    async with engine.begin() as conn:
        await create_tables(conn)
    await engine.dispose()
    code = new_code()
    await record_contact(sessions=deps.sessions, event=submitted(code), audit_key=deps.audit_key)
    await notify_status_change(
        sessions=deps.sessions,
        event=status_changed(code),
        sms=FakeSms(),
        email=FakeEmail(),
        renderer=deps.renderer,
        policy=QUICK,
    )

    # The route records each read on desk.access: in memory here (tests/contract/test_personal_data_routes.py).
    async with TestKafkaBroker(app.state.bus.broker), asgi_client(app, "http://notify") as http:
        key = {"X-Internal-Key": DEV_INTERNAL_KEY}
        found = await http.get(f"/internal/v1/notifications/{format_for_display(code)}", headers=key)
        unknown = await http.get(f"/internal/v1/notifications/{new_code()}", headers=key)
        invalid = await http.get("/internal/v1/notifications/123", headers=key)
        # A stranger learns nothing: the same 401 whether the code exists, does not, or is not a code.
        strangers = [
            await http.get(f"/internal/v1/notifications/{path}", headers=headers)
            for path in (code, new_code(), "123")
            for headers in ({}, {"X-Internal-Key": "guess"})
        ]
        public = await http.get(f"/api/v1/notifications/{code}")
    await deps.sms.aclose()  # type: ignore[attr-defined]

    assert {(r.status_code, r.json()["type"]) for r in strangers} == {(401, PROBLEM_TYPE + "internal-unauthenticated")}
    assert public.status_code == 404
    assert found.status_code == 200
    body = found.json()
    assert body["tracking_code"] == code
    assert [(n["channel"], n["state"], n["status"]) for n in body["notifications"]] == [
        ("sms", "sent", "SUBMITTED"),
        ("email", "sent", "SUBMITTED"),
    ]
    assert body["notifications"][0]["sent_at"].endswith(("Z", "+00:00"))
    assert MOBILE not in found.text and "citizen@example.ir" not in found.text
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert invalid.status_code == 422


async def test_a_row_an_earlier_build_recorded_without_text_is_sent_with_the_text_rendered_now(
    sessions: Sessions, renderer: Renderer
) -> None:
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code))
    change = status_changed(code)
    async with sessions() as session:
        for channel in ("sms", "email"):
            session.add(
                Notification(
                    status_event_id=change.event_id,
                    channel=channel,
                    tracking_code=code,
                    status=change.status.value,
                    state="created",
                )
            )
        await session.commit()
    sms, email = FakeSms(), FakeEmail()
    told = await notify_status_change(
        sessions=sessions, event=change, sms=sms, email=email, renderer=renderer, policy=QUICK
    )
    assert sorted(told) == ["email", "sms"]
    assert format_for_display(code) in sms.sent[0]["message"]
    assert format_for_display(code) in email.sent[0]["subject"] and email.sent[0]["body"].strip()
