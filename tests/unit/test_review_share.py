"""What a reviewing agency's inbox receives: only what the service's `review` section shares."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.inquiry.domain import review_request
from shared.catalog import ApplicantItem, ReviewShare, ServiceDefinition, load_catalog
from shared.domain.identity import make_valid_national_id
from shared.events import (
    Applicant,
    DocumentRef,
    InquiryOutcome,
    NextStep,
    RequestSubmitted,
    VerificationCompleted,
    derived_event_id,
    parse_inbox_event,
)
from testkit.events import answering

CATALOG = load_catalog()
NATIONAL_ID = make_valid_national_id("001234567")


def passport_service() -> ServiceDefinition:
    service = CATALOG.get("passport-renewal-appointment")
    assert service is not None
    return service


def submission(service: ServiceDefinition, fields: dict[str, str]) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code="123456789012345",
        service_id=service.id,
        catalog_version=service.version,
        agency=service.agency,
        applicant=Applicant(
            national_id=NATIONAL_ID, mobile="09121234567", email="a@example.ir", birth_date=date(1990, 1, 31)
        ),
        fields=fields,
        documents=[DocumentRef(kind="photo", sha256="b" * 64, media_type="image/jpeg", size_bytes=10)],
        accept_by=datetime.now(UTC) + timedelta(minutes=1),
    )


def verification(event: RequestSubmitted) -> VerificationCompleted:
    return VerificationCompleted(
        **answering(event, "VerificationCompleted"),
        next_step=NextStep.AGENCY_REVIEW,
        inquiries={"mobile": InquiryOutcome.PASSED},
    )


def test_review_carries_only_what_the_service_shares_and_never_contacts() -> None:
    service = passport_service()
    event = submission(service, {"passport_number": "A12345678", "preferred_date": "1405-01-20", "extra": "x"})
    done = verification(event)
    review = review_request(service, event, done)
    assert review.agency == service.agency == "passport-police"
    assert review.applicant.national_id == NATIONAL_ID
    assert review.applicant.birth_date == date(1990, 1, 31)
    assert review.fields == {"passport_number": "A12345678", "preferred_date": "1405-01-20"}
    assert review.documents == event.documents
    assert review.inquiries == {"mobile": InquiryOutcome.PASSED}
    assert review.event_id == derived_event_id(done.event_id, "ReviewRequested")
    text = review.model_dump_json()
    assert "09121234567" not in text and "a@example.ir" not in text
    assert parse_inbox_event(text.encode()) == review


def test_a_share_without_national_id_or_documents_leaves_them_out() -> None:
    service = passport_service().model_copy(
        update={"review": ReviewShare(applicant=[ApplicantItem.BIRTH_DATE], fields=[], documents=False)}
    )
    event = submission(service, {"passport_number": "A12345678"})
    review = review_request(service, event, verification(event))
    assert review.applicant.national_id is None
    assert review.fields == {}
    assert review.documents == []


def test_the_default_share_is_the_national_id_and_every_form_field() -> None:
    service = CATALOG.get("birth-certificate-duplicate")
    assert service is not None
    event = submission(service, {"reason": "lost"})
    review = review_request(service, event, verification(event))
    assert review.applicant.national_id == NATIONAL_ID and review.applicant.birth_date is None
    assert review.fields == {"reason": "lost"}


def test_a_service_cannot_share_a_field_its_form_lacks() -> None:
    data = passport_service().model_dump(mode="json", exclude={"fields": {"__all__": {"rule"}}})
    data["review"] = {"fields": ["no_such_field"]}
    with pytest.raises(ValidationError, match="no_such_field"):
        ServiceDefinition.model_validate(data)
