"""Pure rules of intake, no I/O: a submission checked against its service's definition, and whether a command
may be given on a request as it stands (and, when not, why, in words a citizen or an agency can act on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import EmailStr, TypeAdapter, ValidationError

from shared.catalog import FieldKind, ServiceDefinition
from shared.domain.digits import normalize_digits, to_persian_digits
from shared.domain.identity import (
    InvalidMobile,
    InvalidNationalId,
    InvalidPostalCode,
    normalize_mobile,
    normalize_national_id,
    normalize_postal_code,
)
from shared.domain.state_machine import (
    DECIDED_STATES,
    Flags,
    Refused,
    RequestState,
    Trigger,
    apply,
    may_yet_allow,
)
from shared.events import Applicant, Language


@dataclass(frozen=True)
class FieldError:
    """A field at fault, in words a citizen can act on."""

    field: str
    code: str
    message_en: str
    message_fa: str


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
    normal_mobile: str | None = None
    try:
        normal_mobile = normalize_mobile(mobile)
    except InvalidMobile:
        errors.append(
            FieldError(
                "applicant.mobile",
                "mobile_format",
                "A mobile number looks like 09121234567 or +989121234567.",
                "شمارهٔ همراه باید مانند ۰۹۱۲۱۲۳۴۵۶۷ یا ‎+۹۸۹۱۲۱۲۳۴۵۶۷ باشد.",
            )
        )
    born = parse_iso_date(birth_date)
    if born is None or born > today or born.year < 1900:
        errors.append(
            FieldError(
                "applicant.birth_date",
                "birth_date_invalid",
                "The birth date must be a real past date, as YYYY-MM-DD.",
                "تاریخ تولد باید تاریخی واقعی در گذشته و به شکل سال-ماه-روز باشد.",
            )
        )
    if email is not None and not is_valid_email(email):
        errors.append(
            FieldError("applicant.email", "email_format", "The email address is not valid.", "نشانی ایمیل معتبر نیست.")
        )
    channels: tuple[Literal["sms", "email"], ...] | None = None
    if notification_channels is not None:
        channels = tuple(dict.fromkeys(notification_channels))  # a channel named twice is told once
        if "email" in channels and email is None:
            errors.append(
                FieldError(
                    "applicant.notification_channels",
                    "email_channel_without_address",
                    "To be told by email, give an email address.",
                    "برای اطلاع‌رسانی با ایمیل، نشانی ایمیل را وارد کنید.",
                )
            )

    normal_fields: dict[str, str] = {}
    known = {form_field.name: form_field for form_field in service.fields}
    for name in sorted(set(fields) - set(known)):
        errors.append(
            FieldError(
                f"fields.{name}",
                "unknown_field",
                f"This service has no field named '{name}'.",
                f"این خدمت فیلدی به نام «{name}» ندارد.",
            )
        )
    for form_field in service.fields:
        path = f"fields.{form_field.name}"
        raw = fields.get(form_field.name, "").strip()
        if not raw:
            if form_field.required:
                errors.append(
                    FieldError(
                        path,
                        "required",
                        f"'{form_field.label.en}' is required.",
                        f"«{form_field.label.fa}» الزامی است.",
                    )
                )
            continue
        if len(raw) > form_field.max_length:
            errors.append(
                FieldError(
                    path,
                    "too_long",
                    f"'{form_field.label.en}' may be at most {form_field.max_length} characters.",
                    f"«{form_field.label.fa}» حداکثر {to_persian_digits(str(form_field.max_length))} نویسه است.",
                )
            )
            continue
        value: str | None = raw
        if form_field.kind is FieldKind.NATIONAL_ID:
            value = _national_id(raw, path, errors)
        elif form_field.kind is FieldKind.POSTAL_CODE:
            try:
                value = normalize_postal_code(raw)
            except InvalidPostalCode:
                value = None
                errors.append(
                    FieldError(path, "postal_code_format", "A postal code has 10 digits.", "کد پستی باید ۱۰ رقم باشد.")
                )
        elif form_field.kind is FieldKind.DATE:
            parsed = parse_iso_date(raw)
            value = parsed.isoformat() if parsed else None
            if parsed is None:
                errors.append(
                    FieldError(
                        path, "date_format", "Dates are written YYYY-MM-DD.", "تاریخ باید به شکل سال-ماه-روز باشد."
                    )
                )
        elif form_field.kind is FieldKind.NUMBER:
            value = normalize_digits(raw)
            if not value.isdigit():
                errors.append(FieldError(path, "number_format", "Digits only, please.", "فقط رقم وارد کنید."))
        if value is not None:
            normal_fields[form_field.name] = value

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


# --- commands on a request ------------------------------------------------------------------------

STATE_FA = {
    RequestState.SUBMITTED: "ثبت‌شده",
    RequestState.AWAITING_PAYMENT: "در انتظار پرداخت",
    RequestState.VERIFYING: "در حال بررسی",
    RequestState.NEEDS_CORRECTION: "نیازمند اصلاح",
    RequestState.IN_REVIEW: "در حال بررسی کارشناس",
    RequestState.APPROVED: "تأییدشده",
    RequestState.DELIVERED: "تحویل‌شده",
    RequestState.REJECTED: "ردشده",
    RequestState.CANCELLED: "لغوشده",
}

_DECISIONS = frozenset({Trigger.DECIDE_APPROVE, Trigger.DECIDE_REJECT, Trigger.DECIDE_NEEDS_CORRECTION})


def explain_refusal(trigger: Trigger, state: RequestState | None, flags: Flags) -> tuple[str, str]:
    """The Persian and English reason a command is not allowed in the request's current state."""
    if trigger is Trigger.CANCEL and state is RequestState.CANCELLED:
        return ("این درخواست پیش‌تر لغو شده است.", "The request has already been cancelled.")
    if trigger is Trigger.CANCEL and state in DECIDED_STATES:
        return (
            "دربارهٔ این درخواست پیش‌تر تصمیم گرفته شده و دیگر نمی‌توان آن را لغو کرد.",
            "The request has already been decided and can no longer be cancelled.",
        )
    if state is RequestState.CANCELLED and trigger is not Trigger.FILE_COMPLAINT:
        return ("این درخواست لغو شده است.", "The request has been cancelled.")
    if trigger is Trigger.SUBMIT_CORRECTION:
        return ("این درخواست اکنون نیازی به اصلاح ندارد.", "The request does not need a correction now.")
    if trigger is Trigger.FILE_COMPLAINT and flags.complaint_open:
        return ("شکایتی دربارهٔ این درخواست هم‌اکنون در جریان است.", "A complaint about this request is already open.")
    if trigger is Trigger.FILE_COMPLAINT:
        return (
            "شکایت پس از اعلام تصمیم یا پس از گذشتن مهلت رسیدگی ممکن است.",
            "A complaint can be filed once the request is decided or its deadline has passed.",
        )
    if trigger in _DECISIONS and state in DECIDED_STATES:
        return ("دربارهٔ این درخواست پیش‌تر تصمیم گرفته شده است.", "The request has already been decided.")
    if trigger in _DECISIONS:
        return (
            "این درخواست در انتظار بررسی کارشناس دستگاه نیست.",
            "The request is not waiting for the agency's review.",
        )
    if trigger is Trigger.DELIVER_RESULT and state is RequestState.DELIVERED:
        return ("نتیجهٔ این درخواست پیش‌تر تحویل شده است.", "The result of this request has already been delivered.")
    if trigger is Trigger.DELIVER_RESULT and state is RequestState.REJECTED:
        return (
            "این درخواست رد شده و نتیجه‌ای برای تحویل ندارد.",
            "The request was rejected; it has no result to deliver.",
        )
    if trigger is Trigger.DELIVER_RESULT:
        return ("این درخواست هنوز تأیید نشده است.", "The request has not been approved yet.")
    if trigger is Trigger.RESOLVE_COMPLAINT and not flags.complaint_open:
        return ("شکایت بازی دربارهٔ این درخواست نیست.", "No complaint about this request is open.")
    return ("این کار در وضعیت کنونی درخواست ممکن نیست.", "This is not possible in the request's current state.")


@dataclass(frozen=True)
class RequestFacts:
    """What tracking's projection says of a request, without its applicant: what an agency command is checked on."""

    tracking_code: str
    service_id: str
    catalog_version: int
    agency: str
    status: RequestState
    flags: Flags
    open_complaint_id: str | None


RefusalKind = Literal["unknown", "not_responsible", "wrong_service", "state", "complaint"]


@dataclass(frozen=True)
class AgencyRefusal:
    """Why an agency command is not accepted; `may_be_behind` when tracking's view may yet catch up with it."""

    kind: RefusalKind
    state: RequestState | None
    reason_fa: str
    reason_en: str
    may_be_behind: bool


def check_agency_command(
    facts: RequestFacts | None,
    *,
    agency: str,
    scope: frozenset[str],
    service_id: str,
    trigger: Trigger,
    complaint_id: str | None = None,
) -> AgencyRefusal | None:
    """None when `agency` (acting within `scope`, naming `service_id`) may give the command now."""
    if facts is None:
        return AgencyRefusal(
            "unknown", None, "درخواستی با این کد رهگیری پیدا نشد.", "No request has this tracking code.", True
        )
    if facts.agency != agency or facts.service_id not in scope:
        return AgencyRefusal(
            "not_responsible",
            facts.status,
            "این درخواست به دستگاه شما سپرده نشده است.",
            "This request is not your agency's to act on.",
            False,
        )
    if facts.service_id != service_id:
        return AgencyRefusal(
            "wrong_service",
            facts.status,
            "این درخواست برای خدمت دیگری از دستگاه شماست، نه خدمتی که نام برده‌اید.",
            f"The request is for the service '{facts.service_id}', not '{service_id}'.",
            False,
        )
    outcome = apply(facts.status, trigger, facts.flags)
    if isinstance(outcome, Refused):
        reason_fa, reason_en = explain_refusal(trigger, facts.status, facts.flags)
        # A complaint just filed, or a state the request is about to reach, may not be in the view yet.
        behind = not facts.flags.complaint_open if trigger is Trigger.RESOLVE_COMPLAINT else None
        return AgencyRefusal(
            "state",
            facts.status,
            reason_fa,
            reason_en,
            behind if behind is not None else may_yet_allow(facts.status, trigger),
        )
    if trigger is Trigger.RESOLVE_COMPLAINT and complaint_id != facts.open_complaint_id:
        return AgencyRefusal(
            "complaint",
            facts.status,
            "شناسهٔ شکایت با شکایت بازِ این درخواست یکی نیست.",
            "The complaint id is not the id of the request's open complaint.",
            False,
        )
    return None
