"""inquiry's use cases: run what a service requires at each agency, then conclude."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.catalog import Catalog, Inquiry
from shared.events import (
    InquiryCompleted,
    InquiryOutcome,
    RequestSubmitted,
    VerificationCompleted,
    derived_event_id,
)
from shared.kafka import PermanentError

from .adapters import AgencyRefused, AgencyUnavailable, CivilRegistry
from .domain import InquiryResult, decide


@dataclass(frozen=True)
class Agencies:
    """The agency adapters inquiry can call."""

    civil_registry: CivilRegistry


async def _identity(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    answer = await agencies.civil_registry.check_identity(
        national_id=event.applicant.national_id, birth_date=event.applicant.birth_date
    )
    if not answer.match:
        return InquiryResult(
            inquiry.id,
            inquiry.agency,
            InquiryOutcome.FAILED,
            reason_fa="تاریخ تولد با سابقهٔ ثبت احوال هم‌خوان نیست؛ آن را بررسی و اصلاح کنید.",
            reason_en="The birth date does not match the civil registry's record; please check and correct it.",
        )
    if not answer.alive:
        return InquiryResult(
            inquiry.id,
            inquiry.agency,
            InquiryOutcome.FAILED,
            reason_fa="این کد ملی در ثبت احوال به نام فرد درگذشته ثبت شده است.",
            reason_en="The civil registry records this national ID as deceased.",
        )
    return InquiryResult(inquiry.id, inquiry.agency, InquiryOutcome.PASSED)


async def run_inquiry(inquiry: Inquiry, event: RequestSubmitted, agencies: Agencies) -> InquiryResult:
    """One inquiry; an agency that stays down after its retry budget gives UNAVAILABLE, never an exception."""
    try:
        if (inquiry.agency, inquiry.check) == ("civil-registry", "identity"):
            return await _identity(inquiry, event, agencies)
    except AgencyUnavailable:
        return InquiryResult(
            inquiry.id,
            inquiry.agency,
            InquiryOutcome.UNAVAILABLE,
            reason_fa="سامانهٔ دستگاه پاسخ نداد.",
            reason_en="The agency's system did not answer.",
        )
    except AgencyRefused:
        return InquiryResult(
            inquiry.id,
            inquiry.agency,
            InquiryOutcome.UNAVAILABLE,
            reason_fa="پاسخ دستگاه قابل استفاده نبود.",
            reason_en="The agency's answer could not be used.",
        )
    return InquiryResult(
        inquiry.id,
        inquiry.agency,
        InquiryOutcome.UNAVAILABLE,
        reason_fa="این استعلام هنوز به‌صورت برخط پشتیبانی نمی‌شود.",
        reason_en="This inquiry is not supported online yet.",
    )


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
