"""The citizen's and the agency's commands on a request: checked here, recorded as events on `desk.requests`.

Plain async functions with keyword-only arguments, no FastAPI: the routes are in `commands_api.py`. A command
is accepted only once Kafka acknowledged its event (acks=all) by the event's `accept_by`, exactly like a
submission; a command refused here publishes nothing.

Every command is checked against tracking's projection before it is published, and the caller is told the
truth at once:
- the citizen proves ownership with the national ID, which intake checks through tracking's lookup (the same
  uniform "not found" for an unknown code and a wrong ID), and the pure state machine says whether the
  command is allowed in the request's current state (409 naming the state when it is not);
- an agency proves who it is with its API key (the key's scope must include the service it names: 403). intake
  then reads the request's facts (service, agency, state, flags, open complaint; no personal data) from
  tracking's internal route: 404 for a code tracking does not hold, 403 for another agency's request, 409 for
  a state that does not allow the command (a second decision, a decision on a cancelled request...) or a
  complaint id that is not the open complaint's.

tracking's projection can be a moment behind the bus (an agency reacting at once to a change may find the
request still VERIFYING, or a code just submitted unknown). So an agency refusal that events not yet folded
could still undo ("unknown", an earlier state, no complaint open yet) is read again every
`settle_poll_s` for up to `settle_s` before it is answered; a refusal that stands (another agency, a final or
already decided state, another complaint id) is answered at once. If tracking cannot answer (down, slow,
5xx, malformed) nothing is published and the caller gets a 503.

tracking still applies the state machine and its guards when it folds each event, so a command that raced
another one (a cancellation crossing a decision) is recorded there as refused, never applied.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.catalog import Catalog
from shared.domain.state_machine import Refused, Trigger, apply
from shared.events import (
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    DocumentRef,
    RequestCancelled,
    RequestDecided,
    ResultDelivered,
)

from .adapters import RequestView
from .adapters_agency_keys import AgencyGrant
from .domain import FieldError, FieldsRefused
from .domain_commands import AgencyRefusal, RequestFacts, check_agency_command, explain_refusal
from .service import Command, Intake, accept_by, record_in_time

# The event a command records, kept exact so that a use case returns its own event type.
C = TypeVar("C", bound=Command)

DECISION_TRIGGERS = {
    Decision.APPROVE: Trigger.DECIDE_APPROVE,
    Decision.REJECT: Trigger.DECIDE_REJECT,
    Decision.NEEDS_CORRECTION: Trigger.DECIDE_NEEDS_CORRECTION,
}


class RequestNotFound(LookupError):
    """No request has this code together with this national ID (which of the two is wrong is never said)."""


class CommandRefused(Exception):
    """The request's current state does not allow the command; the reason is for the citizen, in both languages."""

    def __init__(self, *, refused: Refused, reason_fa: str, reason_en: str) -> None:
        super().__init__(refused.reason)
        self.refused = refused
        self.reason_fa = reason_fa
        self.reason_en = reason_en


class InvalidCorrection(FieldsRefused):
    """The corrected values do not fit the service's form."""


class OutOfScope(PermissionError):
    """The agency key may not act on this service."""


class AgencyCommandRefused(Exception):
    """An agency command checked against the request and refused (unknown, not theirs, or not allowed now)."""

    def __init__(self, refusal: AgencyRefusal) -> None:
        super().__init__(refusal.reason_en)
        self.refusal = refusal


@dataclass(frozen=True)
class CitizenTarget:
    """The request a citizen's command is for, as the citizen names it (canonical code and national ID)."""

    tracking_code: str
    national_id: str


@dataclass(frozen=True)
class AgencyTarget:
    """The request an agency's command is for: who gives it (the key's grant) and the service it names."""

    grant: AgencyGrant
    tracking_code: str
    service_id: str

    def event_fields(self) -> dict[str, str]:
        """What every event of an agency's command says of who gave it on what."""
        return {"tracking_code": self.tracking_code, "agency": self.grant.agency, "service_id": self.service_id}


# --- shared steps ---------------------------------------------------------------------------------


async def _owned_request(*, intake: Intake, target: CitizenTarget, trigger: Trigger) -> RequestView:
    """The citizen's request, when the national ID is its applicant's and the state allows `trigger`."""
    view = await intake.tracking.lookup(tracking_code=target.tracking_code, national_id=target.national_id)
    if view is None:
        raise RequestNotFound(target.tracking_code)
    outcome = apply(view.status, trigger, view.flags)
    if isinstance(outcome, Refused):
        reason_fa, reason_en = explain_refusal(trigger, view.status, view.flags)
        raise CommandRefused(refused=outcome, reason_fa=reason_fa, reason_en=reason_en)
    return view


async def _record(intake: Intake, event_type: type[C], **fields: Any) -> C:
    """The command's event, due by the accept window, published with acks=all; BusUnavailable unless in time."""
    event = event_type(**fields, accept_by=accept_by(intake))
    await record_in_time(intake=intake, publish=intake.publish_command, event=event)
    return event


def _is_persian(text: str) -> bool:
    return any("\u0600" <= char <= "\u06ff" for char in text)


def check_corrected_fields(*, catalog: Catalog, view: RequestView, fields: dict[str, str]) -> dict[str, str]:
    """The corrected values, trimmed, when each names a field of the form the request was submitted on and fits it."""
    service = catalog.get_version(view.service_id, view.catalog_version) or catalog.get(view.service_id)
    known = {form_field.name: form_field for form_field in service.fields} if service is not None else {}
    errors: list[FieldError] = []
    cleaned: dict[str, str] = {}
    for name, raw in sorted(fields.items()):
        path = f"fields.{name}"
        form_field = known.get(name)
        value = raw.strip()
        if form_field is None:
            errors.append(
                FieldError(
                    path,
                    "unknown_field",
                    f"This service has no field named '{name}'.",
                    f"این خدمت فیلدی به نام «{name}» ندارد.",
                )
            )
        elif not value:
            errors.append(FieldError(path, "required", "A corrected value cannot be empty.", "مقدار اصلاحی خالی است."))
        elif len(value) > form_field.max_length:
            errors.append(
                FieldError(
                    path,
                    "too_long",
                    f"'{form_field.label.en}' may be at most {form_field.max_length} characters.",
                    f"«{form_field.label.fa}» حداکثر {form_field.max_length} نویسه است.",
                )
            )
        else:
            cleaned[name] = value
    if errors:
        raise InvalidCorrection(errors)
    return cleaned


# --- the citizen's commands -----------------------------------------------------------------------


async def submit_correction(
    *, intake: Intake, target: CitizenTarget, fields: dict[str, str], documents: list[DocumentRef], note: str | None
) -> CorrectionSubmitted:
    """Record the citizen's correction of a request that waits for one."""
    view = await _owned_request(intake=intake, target=target, trigger=Trigger.SUBMIT_CORRECTION)
    corrected = check_corrected_fields(catalog=intake.catalog, view=view, fields=fields)
    note = (note.strip() or None) if note else None
    return await _record(
        intake,
        CorrectionSubmitted,
        tracking_code=target.tracking_code,
        fields=corrected,
        documents=documents,
        note=note,
    )


async def cancel_request(*, intake: Intake, target: CitizenTarget, reason: str | None) -> RequestCancelled:
    """Record the citizen's cancellation of a request not yet decided."""
    await _owned_request(intake=intake, target=target, trigger=Trigger.CANCEL)
    given = reason.strip() if reason else ""
    # The citizen's own words go in the field of the script they were written in; nothing is translated.
    persian = bool(given) and _is_persian(given)
    return await _record(
        intake,
        RequestCancelled,
        tracking_code=target.tracking_code,
        reason_fa=given if persian else None,
        reason_en=given if given and not persian else None,
    )


async def file_complaint(*, intake: Intake, target: CitizenTarget, text: str) -> ComplaintFiled:
    """Record the citizen's complaint about a decided request, or one past its deadline."""
    await _owned_request(intake=intake, target=target, trigger=Trigger.FILE_COMPLAINT)
    complaint_id = str(uuid.uuid4())
    return await _record(
        intake, ComplaintFiled, tracking_code=target.tracking_code, complaint_id=complaint_id, text=text.strip()
    )


# --- the agency's commands ------------------------------------------------------------------------


def check_scope(*, grant: AgencyGrant, service_id: str) -> None:
    """OutOfScope unless the key may act on this service."""
    if service_id not in grant.services:
        raise OutOfScope(service_id)


async def _agency_request(
    *, intake: Intake, target: AgencyTarget, trigger: Trigger, complaint_id: str | None = None
) -> RequestFacts:
    """The request's facts when this agency may give the command now; else AgencyCommandRefused.

    A refusal tracking's projection may yet catch up with is read again, boundedly (see the module docstring).
    """
    grant = target.grant
    check_scope(grant=grant, service_id=target.service_id)
    deadline = time.monotonic() + intake.settle_s
    while True:
        facts = await intake.tracking.request_facts(target.tracking_code)
        refusal = check_agency_command(
            facts,
            agency=grant.agency,
            scope=grant.services,
            service_id=target.service_id,
            trigger=trigger,
            complaint_id=complaint_id,
        )
        if refusal is None:
            assert facts is not None  # check_agency_command refuses an unknown request
            return facts
        remaining = deadline - time.monotonic()
        if not refusal.may_be_behind or remaining <= 0:
            raise AgencyCommandRefused(refusal)
        await asyncio.sleep(min(intake.settle_poll_s, remaining))


async def decide(
    *,
    intake: Intake,
    target: AgencyTarget,
    decision: Decision,
    reason_fa: str | None,
    reason_en: str | None,
    legal_basis: str | None,
) -> RequestDecided:
    """Record an agency's decision on a request it reviews."""
    await _agency_request(intake=intake, target=target, trigger=DECISION_TRIGGERS[decision])
    return await _record(
        intake,
        RequestDecided,
        **target.event_fields(),
        decision=decision,
        reason_fa=reason_fa,
        reason_en=reason_en,
        legal_basis=legal_basis,
    )


async def deliver_result(
    *,
    intake: Intake,
    target: AgencyTarget,
    document: DocumentRef | None,
    url: str | None,
    summary_fa: str,
    summary_en: str,
) -> ResultDelivered:
    """Record that an agency delivered the result of an approved request."""
    await _agency_request(intake=intake, target=target, trigger=Trigger.DELIVER_RESULT)
    return await _record(
        intake,
        ResultDelivered,
        **target.event_fields(),
        result=document,
        result_url=url,
        summary_fa=summary_fa,
        summary_en=summary_en,
    )


async def resolve_complaint(
    *, intake: Intake, target: AgencyTarget, complaint_id: str, resolution_fa: str, resolution_en: str
) -> ComplaintResolved:
    """Record an agency's answer to the open complaint about one of its requests."""
    await _agency_request(intake=intake, target=target, trigger=Trigger.RESOLVE_COMPLAINT, complaint_id=complaint_id)
    return await _record(
        intake,
        ComplaintResolved,
        **target.event_fields(),
        complaint_id=complaint_id,
        resolution_fa=resolution_fa,
        resolution_en=resolution_en,
    )
