"""inquiry's use cases: run what a service requires at each agency, then conclude; verify each cause once,
record the outcome, then publish it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from prometheus_client import Counter

from shared.access_audit import subject_digest
from shared.catalog import Catalog, Inquiry
from shared.domain.digits import normalize_digits, to_persian_digits
from shared.events import (
    CorrectionSubmitted,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestSubmitted,
    VerificationCompleted,
    derived_event_id,
)
from shared.kafka import PermanentError

from .adapters import AgencyRefused, AgencyUnavailable, count_attempts

# Re-exported: callers of these use cases (the bus edge, tests) take the agencies and their HTTP bundle from here.
from .adapters_agencies import Agencies as Agencies
from .adapters_agencies import http_agencies as http_agencies
from .domain import InquiryResult, Reason, corrected, decide, disclosure_of, review_request
from .store import Outcome, Sessions, load_submission_input, record_verification, recorded_and_published

INQUIRIES = Counter(
    "khedmat_inquiry_outcomes_total",
    "Inquiries run, by agency and outcome (unavailable: the agency stayed down past the retry budget)",
    ["agency", "inquiry", "outcome"],
)
VERIFICATIONS = Counter(
    "khedmat_inquiry_verifications_total", "Verifications concluded, by next step", ["service", "next_step"]
)

# The sandbox property registry takes ids of at most this many characters; so does the catalog's form.
MAX_PROPERTY_ID_LENGTH = 64
_POSTAL_CODE = re.compile(r"[0-9]{10}")

# Why a check failed, in words the citizen can act on.
MISSING_FIELD = Reason(
    "فیلد «{label_fa}» ({field}) خالی است یا درست نیست؛ آن را وارد و درخواست را اصلاح کنید.",
    "The field {field} is missing or not valid; fill it in and submit a correction.",
)
BIRTH_DATE_MISMATCH = Reason(
    "تاریخ تولد با سابقهٔ ثبت احوال هم‌خوان نیست؛ آن را بررسی و اصلاح کنید.",
    "The birth date does not match the civil registry's record; please check and correct it.",
)
DECEASED = Reason(
    "این کد ملی در ثبت احوال به نام فرد درگذشته ثبت شده است.",
    "The civil registry records this national ID as deceased.",
)
LINE_OF_ANOTHER = Reason(
    "این شمارهٔ همراه به نام کد ملی شما ثبت نشده است؛ شماره‌ای را که به نام خودتان است وارد کنید.",
    "This mobile number is not registered to your national ID: use a line in your own name.",
)
UNKNOWN_POSTAL_CODE = Reason(
    "شرکت ملی پست نشانی‌ای برای کد پستی {postal_code_fa} ندارد؛ کد پستی را از روی قبض برق یا گاز بررسی و اصلاح کنید.",
    "Iran Post has no address for postal code {postal_code}: check it on an electricity or gas bill "
    "and submit a correction.",
)
TAX_DEBT = Reason(
    "بدهی مالیاتی {debt_fa} ریال دارید؛ آن را از درگاه سازمان امور مالیاتی بپردازید و سپس درخواست را اصلاح کنید.",
    "Tax debt of {debt:,} rials: settle it through the tax administration's gateway, then submit a correction.",
)
NOT_TAX_CLEARED = Reason(
    "سازمان امور مالیاتی مفاصاحساب شما را تأیید نکرد؛ وضعیت پرونده را با ادارهٔ مالیات بررسی کنید.",
    "The tax administration did not clear you: check your tax file with your tax office, then submit a correction.",
)
CRIMINAL_RECORD = Reason(
    "مرکز سجل قضایی برای این کد ملی سابقهٔ کیفری ثبت کرده است؛ اگر آن را نادرست می‌دانید، با کد رهگیری اعتراض ثبت کنید.",
    "The judiciary's records centre lists a criminal record for this national ID: if you believe it is "
    "wrong, file a complaint with your tracking code.",
)
NOT_PROPERTY_OWNER = Reason(
    "سازمان ثبت اسناد و املاک شما را مالک ملک {property_id} نمی‌شناسد؛ شناسهٔ ملک را از روی سند "
    "تک‌برگ بررسی و اصلاح کنید.",
    "The property registry does not list you as an owner of property {property_id}: check the id on "
    "your single-page deed and submit a correction.",
)
# Why an inquiry could not be run (the request goes to an officer's review).
NOT_CONFIGURED = Reason(
    "استعلام از این دستگاه در این استقرار پیکربندی نشده است.",
    "Inquiries at {agency} are not configured in this deployment.",
)
NO_ANSWER = Reason("سامانهٔ دستگاه پاسخ نداد.", "The agency's system did not answer.")
UNUSABLE_ANSWER = Reason("پاسخ دستگاه قابل استفاده نبود.", "The agency's answer could not be used.")
NOT_ONLINE_YET = Reason("این استعلام هنوز به‌صورت برخط پشتیبانی نمی‌شود.", "This inquiry is not supported online yet.")


class _NotConfigured(Exception):
    """The inquiry's agency has no adapter in this deployment."""


T = TypeVar("T")


def _configured(adapter: T | None) -> T:
    if adapter is None:
        raise _NotConfigured
    return adapter


def _passed(inquiry: Inquiry) -> InquiryResult:
    return InquiryResult(inquiry.id, inquiry.agency, InquiryOutcome.PASSED)


def _not_passed(inquiry: Inquiry, outcome: InquiryOutcome, reason: Reason, **values: object) -> InquiryResult:
    """An inquiry that ended short of passing, with its reason's fields filled from `values`."""
    reason_fa, reason_en = reason.filled(**values)
    return InquiryResult(inquiry.id, inquiry.agency, outcome, reason_fa=reason_fa, reason_en=reason_en)


def _failed(inquiry: Inquiry, reason: Reason, **values: object) -> InquiryResult:
    return _not_passed(inquiry, InquiryOutcome.FAILED, reason, **values)


def _unavailable(inquiry: Inquiry, reason: Reason, **values: object) -> InquiryResult:
    return _not_passed(inquiry, InquiryOutcome.UNAVAILABLE, reason, **values)


async def _identity(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    answer = await agencies.civil_registry.check_identity(
        national_id=event.applicant.national_id, birth_date=event.applicant.birth_date
    )
    if not answer.match:
        return _failed(inquiry, BIRTH_DATE_MISMATCH)
    if not answer.alive:
        return _failed(inquiry, DECEASED)
    return _passed(inquiry)


async def _mobile_ownership(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    registry = _configured(agencies.mobile_registry)
    if await registry.check_ownership(event.applicant.national_id, event.applicant.mobile):
        return _passed(inquiry)
    return _failed(inquiry, LINE_OF_ANOTHER)


async def _postal_address(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    postal = _configured(agencies.postal)
    postal_code = normalize_digits(event.fields.get("postal_code", "").strip())
    if not _POSTAL_CODE.fullmatch(postal_code):
        return _failed(inquiry, MISSING_FIELD, field="postal_code", label_fa="کد پستی")
    if await postal.address(postal_code) is not None:
        return _passed(inquiry)
    return _failed(inquiry, UNKNOWN_POSTAL_CODE, postal_code=postal_code, postal_code_fa=to_persian_digits(postal_code))


async def _tax_clearance(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    tax = _configured(agencies.tax)
    cleared, debt_rials = await tax.clearance(event.applicant.national_id)
    if cleared:
        return _passed(inquiry)
    if debt_rials > 0:
        debt_fa = to_persian_digits(f"{debt_rials:,}").replace(",", "٬")
        return _failed(inquiry, TAX_DEBT, debt=debt_rials, debt_fa=debt_fa)
    return _failed(inquiry, NOT_TAX_CLEARED)


async def _criminal_record(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    judiciary = _configured(agencies.judiciary)
    if await judiciary.criminal_record(event.applicant.national_id):
        return _passed(inquiry)
    return _failed(inquiry, CRIMINAL_RECORD)


async def _property_ownership(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    registry = _configured(agencies.property_registry)
    property_id = event.fields.get("property_id", "").strip()
    if not property_id or len(property_id) > MAX_PROPERTY_ID_LENGTH:
        return _failed(inquiry, MISSING_FIELD, field="property_id", label_fa="شناسهٔ یکتای ملک")
    if await registry.ownership(event.applicant.national_id, property_id):
        return _passed(inquiry)
    return _failed(inquiry, NOT_PROPERTY_OWNER, property_id=property_id)


Check = Callable[[Inquiry, RequestSubmitted, Agencies], Awaitable[InquiryResult]]

# (agency, check) as the catalog names them → how to run it; a catalog inquiry missing here is UNAVAILABLE.
CHECKS: dict[tuple[str, str], Check] = {
    ("civil-registry", "identity"): _identity,
    ("mobile-registry", "ownership"): _mobile_ownership,
    ("postal", "address"): _postal_address,
    ("tax", "clearance"): _tax_clearance,
    ("judiciary", "criminal-record"): _criminal_record,
    ("property-registry", "ownership"): _property_ownership,
}


async def _run(check: Check, inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    try:
        return await check(inquiry, event, agencies)
    except _NotConfigured:
        return _unavailable(inquiry, NOT_CONFIGURED, agency=inquiry.agency)
    except AgencyUnavailable:
        return _unavailable(inquiry, NO_ANSWER)
    except AgencyRefused:
        return _unavailable(inquiry, UNUSABLE_ANSWER)


async def run_inquiry(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    """One inquiry; an agency that stays down after its retry budget gives UNAVAILABLE, never an exception."""
    check = CHECKS.get((inquiry.agency, inquiry.check))
    if check is None:
        return _unavailable(inquiry, NOT_ONLINE_YET)
    with count_attempts() as tally:
        result = await _run(check, inquiry, event, agencies)
    # Adapters that make no HTTP calls (or were refused before calling) still count as one attempt.
    return replace(result, attempts=max(1, tally.attempts))


async def verify_submission(
    *, catalog: Catalog, event: RequestSubmitted, agencies: Agencies
) -> tuple[list[InquiryCompleted], VerificationCompleted]:
    """Run every inquiry the service requires (concurrently: they are independent) and conclude.

    Event ids derive from the submission's, so a redelivered submission yields the very same events and
    every consumer drops the repeats.
    """
    # The version the request was submitted under decides its inquiries, not whatever is current now.
    service = catalog.get_version(event.service_id, event.catalog_version)
    if service is None:
        raise PermanentError(f"service {event.service_id!r} is not in this catalog")
    results = await asyncio.gather(*(run_inquiry(inquiry, event, agencies) for inquiry in service.inquiries))
    completed = [
        InquiryCompleted(
            event_id=derived_event_id(event.event_id, "InquiryCompleted", result.inquiry),
            tracking_code=event.tracking_code,
            caused_by=event.event_id,
            inquiry=result.inquiry,
            agency=result.agency,
            outcome=result.outcome,
            reason_fa=result.reason_fa,
            reason_en=result.reason_en,
            attempts=result.attempts,
        )
        for result in results
    ]
    verdict = decide(service, list(results))
    for result in results:
        INQUIRIES.labels(result.agency, result.inquiry, result.outcome.value).inc()
    VERIFICATIONS.labels(service.id, verdict.next_step.value).inc()
    verification = VerificationCompleted(
        event_id=derived_event_id(event.event_id, "VerificationCompleted"),
        tracking_code=event.tracking_code,
        caused_by=event.event_id,
        next_step=verdict.next_step,
        inquiries={result.inquiry: result.outcome for result in results},
        reason_fa=verdict.reason_fa,
        reason_en=verdict.reason_en,
    )
    return completed, verification


async def _verify_and_record(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, submission: RequestSubmitted, audit_key: bytes
) -> list[Outcome]:
    completed, verification = await verify_submission(catalog=catalog, event=submission, agencies=agencies)
    outcomes: list[Outcome] = [*completed, verification]
    if verification.next_step is NextStep.AGENCY_REVIEW:
        service = catalog.get_version(submission.service_id, submission.catalog_version)
        if service is None:  # verify_submission refused an unknown service already; this keeps mypy honest
            raise PermanentError(f"service {submission.service_id!r} is not in this catalog")
        review = review_request(service, submission, verification)
        # Recorded with the other outcomes and published just before the review: the disclosure is on
        # desk.access before the agency can read it, and a redelivery republishes the same record (same id).
        subject = subject_digest(submission.applicant.national_id, audit_key)
        outcomes += [disclosure_of(review, subject=subject), review]
    return await record_verification(sessions=sessions, submission=submission, outcomes=outcomes)


async def verify_submission_once(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, event: RequestSubmitted, audit_key: bytes
) -> list[Outcome]:
    """The outcomes of a submission still to publish: on redelivery the recorded ones (no agency called), or
    none once they were all published; else fresh and recorded."""
    recorded = await recorded_and_published(sessions=sessions, cause_event_id=event.event_id)
    if recorded is not None:
        # The stored input is left alone: a correction may have been merged into it since.
        outcomes, published = recorded
        return [] if published else outcomes
    return await _verify_and_record(
        sessions=sessions, catalog=catalog, agencies=agencies, submission=event, audit_key=audit_key
    )


async def verify_correction_once(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, correction: CorrectionSubmitted, audit_key: bytes
) -> list[Outcome] | None:
    """The outcomes of re-verifying with a correction merged in, still to publish (as for a submission); None
    when no submission is on record."""
    recorded = await recorded_and_published(sessions=sessions, cause_event_id=correction.event_id)
    if recorded is not None:
        # Checked before merging: a later correction may already have built on this one's stored input.
        outcomes, published = recorded
        return [] if published else outcomes
    original = await load_submission_input(sessions=sessions, tracking_code=correction.tracking_code)
    if original is None:
        return None
    return await _verify_and_record(
        sessions=sessions,
        catalog=catalog,
        agencies=agencies,
        submission=corrected(original, correction),
        audit_key=audit_key,
    )
