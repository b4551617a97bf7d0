"""inquiry's use cases: run what a service requires at each agency, then conclude; verify each cause once,
record the outcome, then publish it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import httpx
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

from .adapters import (
    AgencyRefused,
    AgencyUnavailable,
    CallGuard,
    CivilRegistry,
    HttpCivilRegistry,
    HttpJudiciary,
    HttpMobileRegistry,
    HttpPostalRegistry,
    HttpPropertyRegistry,
    HttpTaxAdministration,
    Judiciary,
    MobileRegistry,
    PostalRegistry,
    PropertyRegistry,
    TaxAdministration,
    count_attempts,
    make_agency_client,
)
from .domain import InquiryResult, corrected, decide, disclosure_of, review_request
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


@dataclass(frozen=True)
class Agencies:
    """The agency adapters inquiry can call; an agency left as None is not configured here."""

    civil_registry: CivilRegistry
    mobile_registry: MobileRegistry | None = None
    postal: PostalRegistry | None = None
    tax: TaxAdministration | None = None
    judiciary: Judiciary | None = None
    property_registry: PropertyRegistry | None = None


def http_agencies(
    base_url: str, *, timeout_s: float, max_attempts: int, guard: CallGuard | None = None
) -> tuple[Agencies, list[httpx.AsyncClient]]:
    """Every agency over HTTP under one base URL, one pooled client each; the caller closes the clients."""
    clients: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        made = make_agency_client(base_url, timeout_s=timeout_s)
        clients.append(made)
        return made

    agencies = Agencies(
        civil_registry=HttpCivilRegistry(client(), max_attempts=max_attempts, guard=guard),
        mobile_registry=HttpMobileRegistry(client(), max_attempts=max_attempts, guard=guard),
        postal=HttpPostalRegistry(client(), max_attempts=max_attempts, guard=guard),
        tax=HttpTaxAdministration(client(), max_attempts=max_attempts, guard=guard),
        judiciary=HttpJudiciary(client(), max_attempts=max_attempts, guard=guard),
        property_registry=HttpPropertyRegistry(client(), max_attempts=max_attempts, guard=guard),
    )
    return agencies, clients


class _NotConfigured(Exception):
    """The inquiry's agency has no adapter in this deployment."""


T = TypeVar("T")


def _configured(adapter: T | None) -> T:
    if adapter is None:
        raise _NotConfigured
    return adapter


def _passed(inquiry: Inquiry) -> InquiryResult:
    return InquiryResult(inquiry.id, inquiry.agency, InquiryOutcome.PASSED)


def _failed(inquiry: Inquiry, reason_fa: str, reason_en: str) -> InquiryResult:
    return InquiryResult(inquiry.id, inquiry.agency, InquiryOutcome.FAILED, reason_fa=reason_fa, reason_en=reason_en)


def _unavailable(inquiry: Inquiry, reason_fa: str, reason_en: str) -> InquiryResult:
    return InquiryResult(
        inquiry.id, inquiry.agency, InquiryOutcome.UNAVAILABLE, reason_fa=reason_fa, reason_en=reason_en
    )


def _missing_field(inquiry: Inquiry, field: str, label_fa: str) -> InquiryResult:
    return _failed(
        inquiry,
        f"فیلد «{label_fa}» ({field}) خالی است یا درست نیست؛ آن را وارد و درخواست را اصلاح کنید.",
        f"The field {field} is missing or not valid; fill it in and submit a correction.",
    )


async def _identity(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    answer = await agencies.civil_registry.check_identity(
        national_id=event.applicant.national_id, birth_date=event.applicant.birth_date
    )
    if not answer.match:
        return _failed(
            inquiry,
            "تاریخ تولد با سابقهٔ ثبت احوال هم‌خوان نیست؛ آن را بررسی و اصلاح کنید.",
            "The birth date does not match the civil registry's record; please check and correct it.",
        )
    if not answer.alive:
        return _failed(
            inquiry,
            "این کد ملی در ثبت احوال به نام فرد درگذشته ثبت شده است.",
            "The civil registry records this national ID as deceased.",
        )
    return _passed(inquiry)


async def _mobile_ownership(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    registry = _configured(agencies.mobile_registry)
    if await registry.check_ownership(event.applicant.national_id, event.applicant.mobile):
        return _passed(inquiry)
    return _failed(
        inquiry,
        "این شمارهٔ همراه به نام کد ملی شما ثبت نشده است؛ شماره‌ای را که به نام خودتان است وارد کنید.",
        "This mobile number is not registered to your national ID: use a line in your own name.",
    )


async def _postal_address(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    postal = _configured(agencies.postal)
    postal_code = normalize_digits(event.fields.get("postal_code", "").strip())
    if not _POSTAL_CODE.fullmatch(postal_code):
        return _missing_field(inquiry, "postal_code", "کد پستی")
    if await postal.address(postal_code) is not None:
        return _passed(inquiry)
    return _failed(
        inquiry,
        f"شرکت ملی پست نشانی‌ای برای کد پستی {to_persian_digits(postal_code)} ندارد؛ "
        "کد پستی را از روی قبض برق یا گاز بررسی و اصلاح کنید.",
        f"Iran Post has no address for postal code {postal_code}: check it on an electricity or gas bill "
        "and submit a correction.",
    )


async def _tax_clearance(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    tax = _configured(agencies.tax)
    cleared, debt_rials = await tax.clearance(event.applicant.national_id)
    if cleared:
        return _passed(inquiry)
    if debt_rials > 0:
        return _failed(
            inquiry,
            f"بدهی مالیاتی {to_persian_digits(f'{debt_rials:,}').replace(',', '٬')} ریال دارید؛ "
            "آن را از درگاه سازمان امور مالیاتی بپردازید و سپس درخواست را اصلاح کنید.",
            f"Tax debt of {debt_rials:,} rials: settle it through the tax administration's gateway, "
            "then submit a correction.",
        )
    return _failed(
        inquiry,
        "سازمان امور مالیاتی مفاصاحساب شما را تأیید نکرد؛ وضعیت پرونده را با ادارهٔ مالیات بررسی کنید.",
        "The tax administration did not clear you: check your tax file with your tax office, then submit a correction.",
    )


async def _criminal_record(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    judiciary = _configured(agencies.judiciary)
    if await judiciary.criminal_record(event.applicant.national_id):
        return _passed(inquiry)
    return _failed(
        inquiry,
        "مرکز سجل قضایی برای این کد ملی سابقهٔ کیفری ثبت کرده است؛ اگر آن را نادرست می‌دانید، "
        "با کد رهگیری اعتراض ثبت کنید.",
        "The judiciary's records centre lists a criminal record for this national ID: if you believe it is "
        "wrong, file a complaint with your tracking code.",
    )


async def _property_ownership(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    registry = _configured(agencies.property_registry)
    property_id = event.fields.get("property_id", "").strip()
    if not property_id or len(property_id) > MAX_PROPERTY_ID_LENGTH:
        return _missing_field(inquiry, "property_id", "شناسهٔ یکتای ملک")
    if await registry.ownership(event.applicant.national_id, property_id):
        return _passed(inquiry)
    return _failed(
        inquiry,
        f"سازمان ثبت اسناد و املاک شما را مالک ملک {property_id} نمی‌شناسد؛ شناسهٔ ملک را از روی سند "
        "تک‌برگ بررسی و اصلاح کنید.",
        f"The property registry does not list you as an owner of property {property_id}: check the id on "
        "your single-page deed and submit a correction.",
    )


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
        return _unavailable(
            inquiry,
            "استعلام از این دستگاه در این استقرار پیکربندی نشده است.",
            f"Inquiries at {inquiry.agency} are not configured in this deployment.",
        )
    except AgencyUnavailable:
        return _unavailable(inquiry, "سامانهٔ دستگاه پاسخ نداد.", "The agency's system did not answer.")
    except AgencyRefused:
        return _unavailable(inquiry, "پاسخ دستگاه قابل استفاده نبود.", "The agency's answer could not be used.")


async def run_inquiry(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    """One inquiry; an agency that stays down after its retry budget gives UNAVAILABLE, never an exception."""
    check = CHECKS.get((inquiry.agency, inquiry.check))
    if check is None:
        return _unavailable(
            inquiry,
            "این استعلام هنوز به‌صورت برخط پشتیبانی نمی‌شود.",
            "This inquiry is not supported online yet.",
        )
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
