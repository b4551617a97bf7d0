"""What verification concludes from the inquiries' outcomes: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from shared.catalog import ApplicantItem, DecisionMode, ServiceDefinition
from shared.events import (
    AccessRecorded,
    ActorKind,
    CorrectionSubmitted,
    InquiryOutcome,
    NextStep,
    Purpose,
    RequestSubmitted,
    ResourceKind,
    ReviewApplicant,
    ReviewRequested,
    VerificationCompleted,
    derived_access_id,
    derived_event_id,
)
from shared.topics import agency_inbox_topic


@dataclass(frozen=True)
class InquiryResult:
    """One inquiry's outcome, with a reason a citizen can act on when it failed."""

    inquiry: str
    agency: str
    outcome: InquiryOutcome
    reason_fa: str | None = None
    reason_en: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Reason:
    """Why an inquiry did not pass, in Persian and English; `{name}` fields are filled for each request."""

    fa: str
    en: str

    def filled(self, **values: object) -> tuple[str, str]:
        """(Persian, English) with the fields filled from `values`."""
        return self.fa.format(**values), self.en.format(**values)


@dataclass(frozen=True)
class Verdict:
    """The next step, and why."""

    next_step: NextStep
    reason_fa: str | None = None
    reason_en: str | None = None


def decide(service: ServiceDefinition, results: list[InquiryResult]) -> Verdict:
    """Failed inquiries ask the citizen for a correction; an unavailable agency sends the request to review
    (never stuck silently); otherwise the service's own decision mode applies."""
    # A judiciary "not clean" is FAILED like any other check and so asks for a correction, not a rejection:
    # rejecting needs a legal basis this service cannot cite, and the citizen may still contest the record.
    failed = [result for result in results if result.outcome is InquiryOutcome.FAILED]
    if failed:
        return Verdict(
            NextStep.NEEDS_CORRECTION,
            reason_fa=" ".join(result.reason_fa or "" for result in failed).strip() or None,
            reason_en=" ".join(result.reason_en or "" for result in failed).strip() or None,
        )
    if any(result.outcome is InquiryOutcome.UNAVAILABLE for result in results):
        return Verdict(
            NextStep.AGENCY_REVIEW,
            reason_fa="استعلام برخط در دسترس نبود؛ درخواست به کارشناس سپرده شد.",
            reason_en="An online inquiry was unavailable; the request went to an officer for review.",
        )
    if service.decision is DecisionMode.AUTOMATIC:
        return Verdict(NextStep.APPROVE)
    return Verdict(NextStep.AGENCY_REVIEW)


def review_request(
    service: ServiceDefinition, submission: RequestSubmitted, verification: VerificationCompleted
) -> ReviewRequested:
    """What the service's agency receives in its inbox for review: only what `service.review` shares."""
    share = service.review
    shown_fields = (
        submission.fields
        if share.fields is None
        else {name: value for name, value in submission.fields.items() if name in share.fields}
    )
    return ReviewRequested(
        event_id=derived_event_id(verification.event_id, "ReviewRequested"),
        tracking_code=submission.tracking_code,
        caused_by=verification.event_id,
        service_id=submission.service_id,
        catalog_version=submission.catalog_version,
        agency=service.agency,
        applicant=ReviewApplicant(
            national_id=(submission.applicant.national_id if ApplicantItem.NATIONAL_ID in share.applicant else None),
            birth_date=submission.applicant.birth_date if ApplicantItem.BIRTH_DATE in share.applicant else None,
        ),
        fields=shown_fields,
        documents=submission.documents if share.documents else [],
        inquiries=verification.inquiries,
        reason_fa=verification.reason_fa,
        reason_en=verification.reason_en,
    )


def disclosure_of(review: ReviewRequested, *, subject: str) -> AccessRecorded:
    """The access record of a review request: the agency reads the citizen's request through its inbox.

    Derived from the review (its id and time), so a re-published review re-publishes the very same record.
    """
    return AccessRecorded(
        access_id=derived_access_id(review.event_id, "review"),
        subject=subject,
        actor_kind=ActorKind.AGENCY,
        actor=review.agency,
        organisation=review.agency,
        role="reviewer",
        resource_kind=ResourceKind.REQUEST,
        resource=review.tracking_code,
        purpose=Purpose.REVIEW,
        client=agency_inbox_topic(review.agency),
        occurred_at=review.occurred_at,
    )


def corrected(original: RequestSubmitted, correction: CorrectionSubmitted) -> RequestSubmitted:
    """The input after a correction; it takes the correction's event id, so every derived id derives from it."""
    return original.model_copy(
        update={
            "event_id": correction.event_id,
            "fields": {**original.fields, **correction.fields},
            "documents": correction.documents or original.documents,
            "occurred_at": correction.occurred_at,
        }
    )
