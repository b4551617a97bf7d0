"""Pure rules of intake, no I/O: a submission checked against its service's definition (the rules of commands
on a request are in domain_commands.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import EmailStr, TypeAdapter, ValidationError

from shared.catalog import FieldKind, FormField, ServiceDefinition
from shared.domain.digits import normalize_digits, to_persian_digits
from shared.domain.identity import (
    InvalidMobile,
    InvalidNationalId,
    InvalidPostalCode,
    normalize_mobile,
    normalize_national_id,
    normalize_postal_code,
)
from shared.events import Applicant, Language


class UnknownService(LookupError):
    """No service in the catalog has this id."""


@dataclass(frozen=True)
class FieldError:
    """A field at fault, in words a citizen can act on."""

    field: str
    code: str
    message_en: str
    message_fa: str


class FieldsRefused(ValueError):
    """Values that do not fit their service: every field at fault, each in words a citizen can act on."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(", ".join(error.field for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class ValidSubmission:
    """A submission whose every value is normalised and checked."""

    applicant: Applicant
    fields: dict[str, str]


_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


def is_valid_email(value: str) -> bool:
    """The same rule the Applicant event applies (email-validator's syntax check, no DNS lookup)."""
    try:
        _EMAIL.validate_python(value)
    except ValidationError:
        return False
    return True


def parse_iso_date(value: str) -> date | None:
    """The Gregorian date of an ISO or a Jalali date (Persian digits accepted), or None."""
    from shared.domain.jalali import InvalidDate, parse_date

    try:
        return parse_date(value)
    except InvalidDate:
        return None


def _national_id(value: str, field: str, errors: list[FieldError]) -> str | None:
    try:
        return normalize_national_id(value)
    except InvalidNationalId as error:
        if error.reason == "check_digit":
            errors.append(
                FieldError(
                    field,
                    "national_id_check_digit",
                    "The national ID's check digit is wrong; please check the number.",
                    "رقم کنترل کد ملی درست نیست؛ لطفاً شماره را بررسی کنید.",
                )
            )
        else:
            errors.append(
                FieldError(
                    field, "national_id_format", "A national ID has exactly 10 digits.", "کد ملی باید ۱۰ رقم باشد."
                )
            )
        return None


def validate_submission(
    *,
    service: ServiceDefinition,
    national_id: str,
    mobile: str,
    email: str | None,
    birth_date: str,
    language: str,
    fields: dict[str, str],
    today: date,
    notification_channels: Sequence[Literal["sms", "email"]] | None = None,
) -> ValidSubmission | list[FieldError]:
    """Check a submission against the service's definition; every fault is reported, not just the first."""
    errors: list[FieldError] = []
    normal_id = _national_id(national_id, "applicant.national_id", errors)
    normal_mobile = _mobile(mobile, errors)
    born = _birth_date(birth_date, today, errors)
    if email is not None and not is_valid_email(email):
        errors.append(
            FieldError("applicant.email", "email_format", "The email address is not valid.", "نشانی ایمیل معتبر نیست.")
        )
    channels = _channels(notification_channels, email, errors)
    normal_fields = _form_fields(service, fields, errors)
    if errors or normal_id is None or normal_mobile is None or born is None:
        return errors
    return ValidSubmission(
        applicant=Applicant(
            national_id=normal_id,
            mobile=normal_mobile,
            email=email,
            birth_date=born,
            language=Language(language),
            notification_channels=channels or None,
        ),
        fields=normal_fields,
    )


def _mobile(value: str, errors: list[FieldError]) -> str | None:
    try:
        return normalize_mobile(value)
    except InvalidMobile:
        errors.append(
            FieldError(
                "applicant.mobile",
                "mobile_format",
                "A mobile number looks like 09121234567 or +989121234567.",
                "شمارهٔ همراه باید مانند ۰۹۱۲۱۲۳۴۵۶۷ یا ‎+۹۸۹۱۲۱۲۳۴۵۶۷ باشد.",
            )
        )
        return None


def _birth_date(value: str, today: date, errors: list[FieldError]) -> date | None:
    born = parse_iso_date(value)
    if born is None or born > today or born.year < 1900:
        errors.append(
            FieldError(
                "applicant.birth_date",
                "birth_date_invalid",
                "The birth date must be a real past date, as YYYY-MM-DD.",
                "تاریخ تولد باید تاریخی واقعی در گذشته و به شکل سال-ماه-روز باشد.",
            )
        )
    return born


def _channels(
    requested: Sequence[Literal["sms", "email"]] | None, email: str | None, errors: list[FieldError]
) -> tuple[Literal["sms", "email"], ...] | None:
    if requested is None:
        return None
    channels = tuple(dict.fromkeys(requested))  # a channel named twice is told once
    if "email" in channels and email is None:
        errors.append(
            FieldError(
                "applicant.notification_channels",
                "email_channel_without_address",
                "To be told by email, give an email address.",
                "برای اطلاع‌رسانی با ایمیل، نشانی ایمیل را وارد کنید.",
            )
        )
    return channels


def _form_fields(service: ServiceDefinition, fields: dict[str, str], errors: list[FieldError]) -> dict[str, str]:
    """The form's values, trimmed and normalised by kind; a fault of each field is added to `errors`."""
    known = {form_field.name for form_field in service.fields}
    for name in sorted(set(fields) - known):
        errors.append(
            FieldError(
                f"fields.{name}",
                "unknown_field",
                f"This service has no field named '{name}'.",
                f"این خدمت فیلدی به نام «{name}» ندارد.",
            )
        )
    normal_fields: dict[str, str] = {}
    for form_field in service.fields:
        value = _form_field(form_field, fields.get(form_field.name, "").strip(), errors)
        if value is not None:
            normal_fields[form_field.name] = value
    return normal_fields


def _form_field(form_field: FormField, raw: str, errors: list[FieldError]) -> str | None:
    path = f"fields.{form_field.name}"
    if not raw:
        if form_field.required:
            errors.append(
                FieldError(
                    path, "required", f"'{form_field.label.en}' is required.", f"«{form_field.label.fa}» الزامی است."
                )
            )
        return None
    if len(raw) > form_field.max_length:
        errors.append(
            FieldError(
                path,
                "too_long",
                f"'{form_field.label.en}' may be at most {form_field.max_length} characters.",
                f"«{form_field.label.fa}» حداکثر {to_persian_digits(str(form_field.max_length))} نویسه است.",
            )
        )
        return None
    return _typed_value(form_field.kind, raw, path, errors)


def _typed_value(kind: FieldKind, raw: str, path: str, errors: list[FieldError]) -> str | None:
    """A value normalised for its kind (national ID, postal code, date, number; else as typed), or None."""
    if kind is FieldKind.NATIONAL_ID:
        return _national_id(raw, path, errors)
    if kind is FieldKind.POSTAL_CODE:
        try:
            return normalize_postal_code(raw)
        except InvalidPostalCode:
            errors.append(
                FieldError(path, "postal_code_format", "A postal code has 10 digits.", "کد پستی باید ۱۰ رقم باشد.")
            )
            return None
    if kind is FieldKind.DATE:
        parsed = parse_iso_date(raw)
        if parsed is None:
            errors.append(
                FieldError(path, "date_format", "Dates are written YYYY-MM-DD.", "تاریخ باید به شکل سال-ماه-روز باشد.")
            )
        return parsed.isoformat() if parsed else None
    if kind is FieldKind.NUMBER:
        value = normalize_digits(raw)
        if not value.isdigit():
            errors.append(FieldError(path, "number_format", "Digits only, please.", "فقط رقم وارد کنید."))
        return value
    return raw
