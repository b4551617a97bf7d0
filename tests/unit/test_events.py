"""The events on the bus and their CloudEvents envelope: round trips, headers, keys, derived ids, acceptance."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.envelope import cloudevent_headers, cloudevent_type, decode_headers, event_key, event_value
from shared.events import (
    LOG_APPEND_TIME_TYPE,
    AnyEvent,
    Applicant,
    EventBase,
    InquiryCompleted,
    InquiryOutcome,
    Language,
    NextStep,
    RequestSubmitted,
    VerificationCompleted,
    derived_event_id,
    parse_request_event,
    parse_status_event,
)
from testkit.events import answering, submitted_change

NATIONAL_ID = make_valid_national_id("001234567")
MOBILE = "09121234567"
CODES = TrackingCodeGenerator(key=b"k" * 32, replica_id=1)
SOURCE = "/test"


def submitted(code: str | None = None, *, accept_by: datetime | None = None) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=code or CODES.next_code(),
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(
            national_id=NATIONAL_ID,
            mobile=MOBILE,
            email="citizen@example.ir",
            birth_date=date(1990, 1, 31),
            language=Language.EN,
        ),
        fields={"reason": "lost"},
        accept_by=accept_by or datetime.now(UTC) + timedelta(seconds=5),
    )


def inquiry_completed(cause: RequestSubmitted) -> InquiryCompleted:
    return InquiryCompleted(
        **answering(cause, "InquiryCompleted", "identity"),
        inquiry="identity",
        agency="civil-registry",
        outcome=InquiryOutcome.FAILED,
        reason_fa="تاریخ تولد هم‌خوان نیست.",
        reason_en="The birth date does not match.",
        attempts=2,
    )


def verification_completed(cause: RequestSubmitted) -> VerificationCompleted:
    return VerificationCompleted(
        **answering(cause, "VerificationCompleted"),
        next_step=NextStep.NEEDS_CORRECTION,
        inquiries={"identity": InquiryOutcome.FAILED},
        reason_en="The birth date does not match.",
    )


def every_event() -> list[AnyEvent]:
    cause = submitted()
    return [cause, inquiry_completed(cause), verification_completed(cause), submitted_change(cause)]


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [submitted(), inquiry_completed(submitted()), verification_completed(submitted())],
    ids=lambda event: event.event_type,
)
def test_request_event_survives_the_envelope_unchanged(event: AnyEvent) -> None:
    parsed = parse_request_event(event_value(event))
    assert type(parsed) is type(event)
    assert parsed == event


@pytest.mark.parametrize(
    "event",
    [submitted(), inquiry_completed(submitted()), verification_completed(submitted())],
    ids=lambda event: event.event_type,
)
def test_request_event_parses_from_a_decoded_json_body_too(event: AnyEvent) -> None:
    assert parse_request_event(json.loads(event_value(event))) == event


def test_status_event_survives_the_envelope_unchanged() -> None:
    event = submitted_change(submitted())
    assert parse_status_event(event_value(event)) == event
    assert parse_status_event(json.loads(event_value(event))) == event


def test_round_trip_keeps_times_timezone_aware() -> None:
    event = submitted()
    parsed = parse_request_event(event_value(event))
    assert isinstance(parsed, RequestSubmitted)
    assert parsed.occurred_at.tzinfo is not None
    assert parsed.accept_by == event.accept_by


def test_unknown_event_type_is_refused() -> None:
    body = json.loads(event_value(submitted()))
    body["event_type"] = "SomethingAddedLater"
    with pytest.raises(ValidationError):
        parse_request_event(body)
    with pytest.raises(ValidationError):
        parse_request_event(json.dumps(body).encode())


def test_unknown_event_type_is_refused_on_the_status_topic() -> None:
    body = json.loads(event_value(submitted_change(submitted())))
    body["event_type"] = "SomethingAddedLater"
    with pytest.raises(ValidationError):
        parse_status_event(body)


def test_request_event_is_not_accepted_as_a_status_event() -> None:
    with pytest.raises(ValidationError):
        parse_status_event(event_value(submitted()))


def test_unknown_schema_version_is_refused() -> None:
    body = json.loads(event_value(submitted()))
    body["schema_version"] = 99
    with pytest.raises(ValidationError):
        parse_request_event(body)


def test_malformed_tracking_code_is_refused() -> None:
    body = json.loads(event_value(submitted()))
    body["tracking_code"] = "12345"
    with pytest.raises(ValidationError):
        parse_request_event(body)


def test_events_are_frozen() -> None:
    event = submitted()
    with pytest.raises(ValidationError):
        event.tracking_code = "000000000000000"  # type: ignore[misc]


# --- CloudEvents headers and keys -----------------------------------------------------------------


@pytest.mark.parametrize("event", every_event(), ids=lambda event: event.event_type)
def test_cloudevent_headers_identify_the_event(event: AnyEvent) -> None:
    headers = cloudevent_headers(event, source=SOURCE)
    assert isinstance(
        event, EventBase
    )  # the events about one request (AccessRecorded: tests/unit/test_access_audit.py)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == event.event_id
    assert headers["ce_subject"] == event.tracking_code
    assert headers["ce_source"] == SOURCE
    assert headers["ce_type"] == f"ir.khedmat.desk.{event.event_type}.v{event.schema_version}"
    assert headers["ce_type"] == cloudevent_type(event)
    assert headers["ce_type"].endswith(".v1")
    assert headers["content-type"] == "application/json"
    assert datetime.fromisoformat(headers["ce_time"]) == event.occurred_at
    assert all(isinstance(value, str) for value in headers.values())


def test_cloudevent_headers_carry_no_personal_data() -> None:
    headers = cloudevent_headers(submitted(), source=SOURCE)
    text = json.dumps(headers)
    assert NATIONAL_ID not in text
    assert MOBILE not in text
    assert "citizen@example.ir" not in text


@pytest.mark.parametrize("event", every_event(), ids=lambda event: event.event_type)
def test_event_key_is_the_tracking_code(event: AnyEvent) -> None:
    assert isinstance(event, EventBase)
    assert event_key(event) == event.tracking_code.encode()


@given(prefix=st.from_regex(r"[0-9]{9}", fullmatch=True), mobile_tail=st.from_regex(r"[0-9]{9}", fullmatch=True))
def test_event_key_never_contains_the_national_id_or_mobile(prefix: str, mobile_tail: str) -> None:
    try:
        national_id = make_valid_national_id(prefix)
    except ValueError:
        return  # a repeated-digit prefix never yields a valid ID
    mobile = "09" + mobile_tail
    event = submitted().model_copy(
        update={
            "applicant": Applicant(national_id=national_id, mobile=mobile, birth_date=date(1990, 1, 1)),
        }
    )
    key = event_key(event)
    assert key == event.tracking_code.encode()
    assert national_id.encode() not in key
    assert mobile.encode() not in key
    assert mobile[1:].encode() not in key


def test_event_value_is_the_event_as_json() -> None:
    event = submitted()
    body = json.loads(event_value(event))
    assert body["event_type"] == "RequestSubmitted"
    assert body["schema_version"] == 1
    assert body["event_id"] == event.event_id
    assert body["tracking_code"] == event.tracking_code


def test_decoded_kafka_headers_match_the_cloudevent_headers() -> None:
    headers = cloudevent_headers(submitted(), source=SOURCE)
    as_kafka = [(name, value.encode()) for name, value in headers.items()]
    assert decode_headers(as_kafka) == headers
    assert decode_headers(headers) == headers


# --- derived ids ----------------------------------------------------------------------------------


def test_derived_event_id_is_deterministic() -> None:
    assert derived_event_id("cause-1", "InquiryCompleted", "identity") == derived_event_id(
        "cause-1", "InquiryCompleted", "identity"
    )
    assert derived_event_id("cause-1", "StatusChanged") == derived_event_id("cause-1", "StatusChanged", "")


def test_derived_event_id_differs_per_cause_kind_and_discriminator() -> None:
    ids = {
        derived_event_id("cause-1", "InquiryCompleted", "identity"),
        derived_event_id("cause-1", "InquiryCompleted", "address"),
        derived_event_id("cause-1", "InquiryCompleted"),
        derived_event_id("cause-1", "VerificationCompleted"),
        derived_event_id("cause-1", "StatusChanged"),
        derived_event_id("cause-2", "StatusChanged"),
    }
    assert len(ids) == 6


@given(cause=st.text(max_size=40), kind=st.text(max_size=20), discriminator=st.text(max_size=20))
def test_derived_event_id_is_a_stable_uuid(cause: str, kind: str, discriminator: str) -> None:
    first = derived_event_id(cause, kind, discriminator)
    assert first == derived_event_id(cause, kind, discriminator)
    assert len(first) == 36
    assert first != derived_event_id(cause, kind + "x", discriminator)


def test_fresh_event_ids_are_unique() -> None:
    assert len({submitted().event_id for _ in range(100)}) == 100


# --- acceptance of a submission -------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_submission_without_a_broker_append_time_counts() -> None:
    event = submitted(accept_by=datetime.now(UTC) - timedelta(hours=1))
    late = _ms(event.accept_by) + 60_000
    assert event.counts(timestamp_ms=late, timestamp_type=0)
    assert event.counts(timestamp_ms=-1, timestamp_type=-1)


def test_submission_appended_by_accept_by_counts() -> None:
    event = submitted()
    assert event.counts(timestamp_ms=_ms(event.accept_by) - 1_000, timestamp_type=LOG_APPEND_TIME_TYPE)
    assert event.counts(timestamp_ms=_ms(event.accept_by), timestamp_type=LOG_APPEND_TIME_TYPE)


def test_submission_appended_after_accept_by_does_not_count() -> None:
    event = submitted()
    assert not event.counts(timestamp_ms=_ms(event.accept_by) + 1, timestamp_type=LOG_APPEND_TIME_TYPE)
    assert not event.counts(timestamp_ms=_ms(event.accept_by) + 60_000, timestamp_type=LOG_APPEND_TIME_TYPE)


def test_log_append_time_is_kafkas_type_one() -> None:
    assert LOG_APPEND_TIME_TYPE == 1


def test_applicant_channels_must_be_reachable_and_named_once() -> None:
    base = {"national_id": "0012345679", "mobile": "09121234567", "birth_date": date(1990, 1, 31)}
    assert Applicant(**base, notification_channels=("sms",)).notification_channels == ("sms",)
    assert Applicant(**base).notification_channels is None
    with pytest.raises(ValidationError, match="email notifications need an email address"):
        Applicant(**base, notification_channels=("email",))
    with pytest.raises(ValidationError, match="named twice"):
        Applicant(**base, email="a@example.ir", notification_channels=("sms", "sms"))
    with pytest.raises(ValidationError):
        Applicant(**base, notification_channels=())
