"""How request events move the projection: pure mapping from events to triggers and to timeline text."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.state_machine import Trigger
from shared.events import (
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestEvent,
    RequestSubmitted,
    VerificationCompleted,
)

_VERIFIED = {
    NextStep.APPROVE: Trigger.VERIFIED_APPROVE,
    NextStep.AGENCY_REVIEW: Trigger.VERIFIED_REVIEW,
    NextStep.NEEDS_CORRECTION: Trigger.VERIFIED_NEEDS_CORRECTION,
    NextStep.REJECT: Trigger.VERIFIED_REJECT,
}

_INQUIRY_FA = {
    InquiryOutcome.PASSED: "تأیید شد",
    InquiryOutcome.FAILED: "تأیید نشد",
    InquiryOutcome.UNAVAILABLE: "در دسترس نبود",
}


def trigger_for(event: RequestEvent) -> Trigger:
    """The state-machine trigger an event carries."""
    if isinstance(event, RequestSubmitted):
        return Trigger.SUBMIT
    if isinstance(event, InquiryCompleted):
        return Trigger.INQUIRY_DONE
    return _VERIFIED[event.next_step]


@dataclass(frozen=True)
class Description:
    """Timeline text for an event, and what the request waits for afterwards."""

    detail_fa: str | None
    detail_en: str | None
    waiting_for_fa: str | None
    waiting_for_en: str | None


def describe(event: RequestEvent) -> Description:
    """Words for the timeline, so a citizen never has to call to ask what the request is waiting for."""
    if isinstance(event, RequestSubmitted):
        return Description(
            "درخواست ثبت شد.",
            "The request was submitted.",
            "در انتظار استعلام‌های برخط",
            "Waiting for the online inquiries",
        )
    if isinstance(event, InquiryCompleted):
        return Description(
            f"استعلام {event.inquiry} از {event.agency}: {_INQUIRY_FA[event.outcome]}. {event.reason_fa or ''}".strip(),
            f"Inquiry {event.inquiry} at {event.agency}: {event.outcome.value}. {event.reason_en or ''}".strip(),
            "در انتظار نتیجهٔ بررسی",
            "Waiting for the verification to finish",
        )
    assert isinstance(event, VerificationCompleted)
    waiting = {
        NextStep.APPROVE: (None, None),
        NextStep.AGENCY_REVIEW: ("در انتظار بررسی کارشناس دستگاه", "Waiting for the agency's review"),
        NextStep.NEEDS_CORRECTION: ("در انتظار اصلاح از سوی شما", "Waiting for your correction"),
        NextStep.REJECT: (None, None),
    }[event.next_step]
    return Description(
        event.reason_fa or "بررسی انجام شد.",
        event.reason_en or f"Verification finished: {event.next_step.value}.",
        waiting[0],
        waiting[1],
    )
