"""intake's validation of a submission against the seeded service's own definition."""

from __future__ import annotations

from datetime import date
from typing import Literal, TypedDict

import pytest
from typing_extensions import Unpack

from services.intake.domain import FieldError, ValidSubmission, parse_iso_date, validate_submission
from shared.catalog import FieldKind, FormField, ServiceDefinition, Text, load_catalog
from shared.domain.digits import to_persian_digits
from shared.domain.identity import make_valid_national_id
from shared.events import Applicant, Language

SERVICE_ID = "birth-certificate-duplicate"
TODAY = date(2025, 6, 1)
NATIONAL_ID = make_valid_national_id("001234567")


def seeded_service() -> ServiceDefinition:
    service = load_catalog().get(SERVICE_ID)
    assert service is not None
    return service


SERVICE = seeded_service()


def wrong_check_digit(national_id: str) -> str:
    return national_id[:-1] + str((int(national_id[-1]) + 1) % 10)


class ApplicantInput(TypedDict, total=False):
    """The applicant's part of a submission, as the API hands it to validation."""

    national_id: str
    mobile: str
    email: str | None
    birth_date: str
    language: str
    notification_channels: list[Literal["sms", "email"]] | None


VALID_APPLICANT: ApplicantInput = {
    "national_id": NATIONAL_ID,
    "mobile": "09121234567",
    "email": "citizen@example.ir",
    "birth_date": "1990-01-31",
    "language": "fa",
    "notification_channels": None,
}


def validate(
    *, service: ServiceDefinition = SERVICE, fields: dict[str, str] | None = None, **changed: Unpack[ApplicantInput]
) -> ValidSubmission | list[FieldError]:
    """Validation of a valid applicant's request for a lost certificate, but for what the test changed."""
    applicant: ApplicantInput = {**VALID_APPLICANT, **changed}
    return validate_submission(
        service=service, fields={"reason": "lost"} if fields is None else fields, today=TODAY, **applicant
    )


def errors_of(outcome: ValidSubmission | list[FieldError]) -> list[FieldError]:
    assert isinstance(outcome, list), f"expected field errors, got {outcome!r}"
    return outcome


def only_error(outcome: ValidSubmission | list[FieldError]) -> FieldError:
    errors = errors_of(outcome)
    assert len(errors) == 1, errors
    error = errors[0]
    assert error.message_en.strip()
    assert error.message_fa.strip()
    assert error.message_en != error.message_fa
    return error


# --- valid input ----------------------------------------------------------------------------------


def test_seeded_service_has_the_reason_field() -> None:
    assert [field.name for field in SERVICE.fields] == ["reason"]
    assert SERVICE.fields[0].required
    assert SERVICE.fields[0].max_length == 200


def test_valid_submission_is_accepted() -> None:
    outcome = validate()
    assert outcome == ValidSubmission(
        applicant=Applicant(
            national_id=NATIONAL_ID,
            mobile="09121234567",
            email="citizen@example.ir",
            birth_date=date(1990, 1, 31),
            language=Language.FA,
        ),
        fields={"reason": "lost"},
    )


def test_persian_digits_are_normalised() -> None:
    outcome = validate(
        national_id=to_persian_digits(NATIONAL_ID),
        mobile=to_persian_digits("09121234567"),
        birth_date=to_persian_digits("1990-01-31"),
    )
    assert isinstance(outcome, ValidSubmission)
    assert outcome.applicant.national_id == NATIONAL_ID
    assert outcome.applicant.mobile == "09121234567"
    assert outcome.applicant.birth_date == date(1990, 1, 31)


@pytest.mark.parametrize("mobile", ["+989121234567", "00989121234567", "989121234567", "9121234567", "0912-123-4567"])
def test_mobile_prefixes_are_normalised(mobile: str) -> None:
    outcome = validate(mobile=mobile)
    assert isinstance(outcome, ValidSubmission)
    assert outcome.applicant.mobile == "09121234567"


def test_national_id_with_separators_is_normalised() -> None:
    outcome = validate(national_id=f"{NATIONAL_ID[:3]}-{NATIONAL_ID[3:9]}-{NATIONAL_ID[9]}")
    assert isinstance(outcome, ValidSubmission)
    assert outcome.applicant.national_id == NATIONAL_ID


def test_field_values_are_trimmed() -> None:
    outcome = validate(fields={"reason": "  lost  "})
    assert isinstance(outcome, ValidSubmission)
    assert outcome.fields == {"reason": "lost"}


def test_email_is_optional() -> None:
    outcome = validate(email=None)
    assert isinstance(outcome, ValidSubmission)
    assert outcome.applicant.email is None


def test_english_language_is_kept() -> None:
    outcome = validate(language="en")
    assert isinstance(outcome, ValidSubmission)
    assert outcome.applicant.language is Language.EN


def test_birth_date_today_is_accepted() -> None:
    assert isinstance(validate(birth_date=TODAY.isoformat()), ValidSubmission)


def test_field_at_its_maximum_length_is_accepted() -> None:
    assert isinstance(validate(fields={"reason": "x" * 200}), ValidSubmission)


# --- each fault -----------------------------------------------------------------------------------


def test_wrong_check_digit_is_reported() -> None:
    error = only_error(validate(national_id=wrong_check_digit(NATIONAL_ID)))
    assert (error.field, error.code) == ("applicant.national_id", "national_id_check_digit")


@pytest.mark.parametrize("national_id", ["12345", "00123456789", "abcdefghij", "1111111111"])
def test_malformed_national_id_is_reported(national_id: str) -> None:
    error = only_error(validate(national_id=national_id))
    assert (error.field, error.code) == ("applicant.national_id", "national_id_format")


@pytest.mark.parametrize("mobile", ["0912123456", "08121234567", "+18121234567", "phone", "091212345678"])
def test_bad_mobile_is_reported(mobile: str) -> None:
    error = only_error(validate(mobile=mobile))
    assert (error.field, error.code) == ("applicant.mobile", "mobile_format")


def test_future_birth_date_is_reported() -> None:
    error = only_error(validate(birth_date="2025-06-02"))
    assert (error.field, error.code) == ("applicant.birth_date", "birth_date_invalid")


@pytest.mark.parametrize("birth_date", ["31/01/1990", "1990-02-30", "1899-12-31", ""])
def test_unreal_birth_date_is_reported(birth_date: str) -> None:
    error = only_error(validate(birth_date=birth_date))
    assert (error.field, error.code) == ("applicant.birth_date", "birth_date_invalid")


@pytest.mark.parametrize("email", ["no-at-sign", "@example.ir", "citizen@"])
def test_bad_email_is_reported(email: str) -> None:
    error = only_error(validate(email=email))
    assert (error.field, error.code) == ("applicant.email", "email_format")


@pytest.mark.parametrize("email", ["a@b", "citizen@localhost", "a b@example.ir", "x@@example.ir"])
def test_email_the_applicant_model_refuses_is_reported_as_a_field_error(email: str) -> None:
    error = only_error(validate(email=email))
    assert (error.field, error.code) == ("applicant.email", "email_format")


def test_unknown_field_is_reported() -> None:
    error = only_error(validate(fields={"reason": "lost", "colour": "blue"}))
    assert (error.field, error.code) == ("fields.colour", "unknown_field")
    assert "colour" in error.message_en
    assert "colour" in error.message_fa


@pytest.mark.parametrize("fields", [{}, {"reason": ""}, {"reason": "   "}])
def test_missing_required_field_is_reported(fields: dict[str, str]) -> None:
    error = only_error(validate(fields=fields))
    assert (error.field, error.code) == ("fields.reason", "required")
    assert "Reason" in error.message_en
    assert "علت درخواست" in error.message_fa


def test_too_long_field_is_reported() -> None:
    error = only_error(validate(fields={"reason": "x" * 201}))
    assert (error.field, error.code) == ("fields.reason", "too_long")
    assert "200" in error.message_en
    assert "۲۰۰" in error.message_fa and "200" not in error.message_fa


def test_every_fault_is_reported_together() -> None:
    outcome = validate(
        national_id=wrong_check_digit(NATIONAL_ID),
        mobile="12345",
        email="nobody",
        birth_date="2999-01-01",
        fields={"colour": "blue", "size": "L"},
    )
    errors = errors_of(outcome)
    assert {(error.field, error.code) for error in errors} == {
        ("applicant.national_id", "national_id_check_digit"),
        ("applicant.mobile", "mobile_format"),
        ("applicant.email", "email_format"),
        ("applicant.birth_date", "birth_date_invalid"),
        ("fields.colour", "unknown_field"),
        ("fields.size", "unknown_field"),
        ("fields.reason", "required"),
    }
    assert len(errors) == 7
    assert all(error.message_en and error.message_fa for error in errors)


def test_a_single_fault_does_not_hide_a_valid_applicant_behind_another_error() -> None:
    errors = errors_of(validate(fields={"reason": "x" * 500}))
    assert [error.code for error in errors] == ["too_long"]


# --- field kinds other than text (a service built for the test) -----------------------------------


def service_with(*fields: FormField) -> ServiceDefinition:
    return SERVICE.model_copy(update={"fields": list(fields)})


def form_field(name: str, kind: FieldKind, *, required: bool = True) -> FormField:
    return FormField(name=name, label=Text(fa=name, en=name), kind=kind, required=required)


# A service with a field of each typed kind, and an optional text.
TYPED_SERVICE = service_with(
    form_field("spouse_id", FieldKind.NATIONAL_ID),
    form_field("postal_code", FieldKind.POSTAL_CODE),
    form_field("married_on", FieldKind.DATE),
    form_field("children", FieldKind.NUMBER),
    form_field("note", FieldKind.TEXT, required=False),
)


def test_typed_fields_are_normalised() -> None:
    outcome = validate(
        service=TYPED_SERVICE,
        fields={
            "spouse_id": to_persian_digits(NATIONAL_ID),
            "postal_code": "13579-13579",
            "married_on": to_persian_digits("2010-05-06"),
            "children": to_persian_digits("3"),
        },
    )
    assert isinstance(outcome, ValidSubmission)
    assert outcome.fields == {
        "spouse_id": NATIONAL_ID,
        "postal_code": "1357913579",
        "married_on": "2010-05-06",
        "children": "3",
    }


def test_typed_fields_report_their_own_codes() -> None:
    errors = errors_of(
        validate(
            service=TYPED_SERVICE,
            fields={"spouse_id": "123", "postal_code": "0000000000", "married_on": "yesterday", "children": "two"},
        )
    )
    assert {(error.field, error.code) for error in errors} == {
        ("fields.spouse_id", "national_id_format"),
        ("fields.postal_code", "postal_code_format"),
        ("fields.married_on", "date_format"),
        ("fields.children", "number_format"),
    }


def test_parse_iso_date_accepts_persian_digits_and_refuses_nonsense() -> None:
    assert parse_iso_date(" ۱۹۹۰-۰۱-۰۱ ") == date(1990, 1, 1)
    assert parse_iso_date("not a date") is None


# --- notification channels ------------------------------------------------------------------------


def test_channels_default_to_none_and_are_kept_once_each() -> None:
    plain = validate()
    assert isinstance(plain, ValidSubmission) and plain.applicant.notification_channels is None
    chosen = validate(notification_channels=["email", "sms", "email"])
    assert isinstance(chosen, ValidSubmission) and chosen.applicant.notification_channels == ("email", "sms")


def test_email_channel_without_an_address_is_refused() -> None:
    error = only_error(validate(email=None, notification_channels=["email"]))
    assert (error.field, error.code) == ("applicant.notification_channels", "email_channel_without_address")
