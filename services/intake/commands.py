"""The citizen's and the agency's commands on a request: checked here, recorded as events on `desk.requests`.

Plain async functions, no FastAPI: the routes are in `commands_api.py`. A command is accepted only once Kafka
acknowledged its event (acks=all) by the event's `accept_by`, exactly like a submission.

Who may give a command:
- the citizen proves ownership with the national ID, which intake checks through tracking's lookup (the same
  uniform "not found" for an unknown code and a wrong ID), and the pure state machine says whether the
  command is allowed in the request's current state, so most refusals are answered at once (409);
- an agency proves who it is with its API key. intake cannot read the request without the applicant's
  national ID, so it does not look the request up: the agency names the request's `service_id`, intake
  checks that service is in the key's scope (403 otherwise), and the event carries the key's agency. tracking
  then refuses, on the request's timeline, an agency command whose agency or service is not the request's.

tracking still applies the state machine when it folds each event, so a command that raced another one
(a cancellation crossing a decision) is recorded there as refused, never applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from aiokafka.structs import RecordMetadata

from shared.catalog import Catalog
from shared.domain.state_machine import DECIDED_STATES, Flags, Refused, RequestState, Trigger, apply
from shared.events import (
    AgencyCommand,
    CitizenCommand,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    DocumentRef,
    RequestCancelled,
    RequestDecided,
    ResultDelivered,
    utcnow,
)

from .adapters import RequestView
from .agency_keys import AgencyGrant, AgencyKeys
from .domain import FieldError
from .service import record_in_time

Command = CitizenCommand | AgencyCommand
PublishCommand = Callable[[Command], Awaitable[RecordMetadata]]


class TrackingLookup(Protocol):
    """tracking's lookup (adapters.TrackingClient); raises adapters.TrackingUnavailable when it cannot answer."""

    async def lookup(self, *, tracking_code: str, national_id: str) -> RequestView | None: ...

    async def aclose(self) -> None: ...


class RequestNotFound(LookupError):
    """No request has this code together with this national ID (which of the two is wrong is never said)."""


class CommandRefused(Exception):
    """The request's current state does not allow the command; the reason is for the citizen, in both languages."""

    def __init__(self, *, refused: Refused, reason_fa: str, reason_en: str) -> None:
        super().__init__(refused.reason)
        self.refused = refused
        self.reason_fa = reason_fa
        self.reason_en = reason_en


class InvalidCorrection(ValueError):
    """The corrected values do not fit the service's form."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(", ".join(error.field for error in errors))
        self.errors = errors


class OutOfScope(PermissionError):
    """The agency key may not act on this service."""


@dataclass
class Commands:
    """What the commands depend on; built once by the composition root, kept on `app.state.commands`."""

    tracking: TrackingLookup
    agency_keys: AgencyKeys
    catalog: Catalog
    publish: PublishCommand
    is_connected: Callable[[], bool]
    accept_window_s: float
    grace_s: float

    async def aclose(self) -> None:
        """Release outbound connections."""
        await self.tracking.aclose()


# --- why a command is refused, in words a citizen can act on --------------------------------------


def explain_refusal(trigger: Trigger, state: RequestState | None, flags: Flags) -> tuple[str, str]:
    """The Persian and English reason a command is not allowed now."""
    if trigger is Trigger.CANCEL and state in DECIDED_STATES:
        return (
            "دربارهٔ این درخواست پیش‌تر تصمیم گرفته شده و دیگر نمی‌توان آن را لغو کرد.",
            "The request has already been decided and can no longer be cancelled.",
        )
    if trigger is Trigger.SUBMIT_CORRECTION:
        return ("این درخواست اکنون نیازی به اصلاح ندارد.", "The request does not need a correction now.")
    if trigger is Trigger.FILE_COMPLAINT and flags.complaint_open:
        return ("شکایتی دربارهٔ این درخواست هم‌اکنون در جریان است.", "A complaint about this request is already open.")
    if trigger is Trigger.FILE_COMPLAINT:
        return (
            "شکایت پس از اعلام تصمیم یا پس از گذشتن مهلت رسیدگی ممکن است.",
            "A complaint can be filed once the request is decided or its deadline has passed.",
        )
    return ("این کار در وضعیت کنونی درخواست ممکن نیست.", "This is not possible in the request's current state.")


# --- shared steps ---------------------------------------------------------------------------------


async def _owned_request(commands: Commands, *, tracking_code: str, national_id: str, trigger: Trigger) -> RequestView:
    """The citizen's request, when the national ID is its applicant's and the state allows `trigger`."""
    view = await commands.tracking.lookup(tracking_code=tracking_code, national_id=national_id)
    if view is None:
        raise RequestNotFound(tracking_code)
    outcome = apply(view.status, trigger, view.flags)
    if isinstance(outcome, Refused):
        reason_fa, reason_en = explain_refusal(trigger, view.status, view.flags)
        raise CommandRefused(refused=outcome, reason_fa=reason_fa, reason_en=reason_en)
    return view


async def _record(commands: Commands, event: Command) -> None:
    """Publish with acks=all; BusUnavailable unless Kafka appended the event by its `accept_by`."""
    await record_in_time(commands.publish, event, accept_window_s=commands.accept_window_s, grace_s=commands.grace_s)


def _accept_by(commands: Commands) -> timedelta:
    return timedelta(seconds=commands.accept_window_s)


def _is_persian(text: str) -> bool:
    return any("\u0600" <= char <= "\u06ff" for char in text)


def check_corrected_fields(catalog: Catalog, view: RequestView, fields: dict[str, str]) -> dict[str, str]:
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
    commands: Commands,
    *,
    tracking_code: str,
    national_id: str,
    fields: dict[str, str],
    documents: list[DocumentRef],
    note: str | None,
) -> CorrectionSubmitted:
    """Record the citizen's correction of a request that waits for one."""
    view = await _owned_request(
        commands, tracking_code=tracking_code, national_id=national_id, trigger=Trigger.SUBMIT_CORRECTION
    )
    event = CorrectionSubmitted(
        tracking_code=tracking_code,
        fields=check_corrected_fields(commands.catalog, view, fields),
        documents=documents,
        note=(note.strip() or None) if note else None,
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event


async def cancel_request(
    commands: Commands, *, tracking_code: str, national_id: str, reason: str | None
) -> RequestCancelled:
    """Record the citizen's cancellation of a request not yet decided."""
    await _owned_request(commands, tracking_code=tracking_code, national_id=national_id, trigger=Trigger.CANCEL)
    given = reason.strip() if reason else ""
    event = RequestCancelled(
        tracking_code=tracking_code,
        # The citizen's own words go in the field of the script they were written in; nothing is translated.
        reason_fa=given if given and _is_persian(given) else None,
        reason_en=given if given and not _is_persian(given) else None,
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event


async def file_complaint(commands: Commands, *, tracking_code: str, national_id: str, text: str) -> ComplaintFiled:
    """Record the citizen's complaint about a decided request, or one past its deadline."""
    await _owned_request(commands, tracking_code=tracking_code, national_id=national_id, trigger=Trigger.FILE_COMPLAINT)
    event = ComplaintFiled(
        tracking_code=tracking_code,
        complaint_id=str(uuid.uuid4()),
        text=text.strip(),
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event


# --- the agency's commands ------------------------------------------------------------------------


def check_scope(grant: AgencyGrant, service_id: str) -> None:
    """OutOfScope unless the key may act on this service."""
    if service_id not in grant.services:
        raise OutOfScope(service_id)


async def decide(
    commands: Commands,
    *,
    grant: AgencyGrant,
    tracking_code: str,
    service_id: str,
    decision: Decision,
    reason_fa: str | None,
    reason_en: str | None,
    legal_basis: str | None,
) -> RequestDecided:
    """Record an agency's decision on a request it reviews."""
    check_scope(grant, service_id)
    event = RequestDecided(
        tracking_code=tracking_code,
        agency=grant.agency,
        service_id=service_id,
        decision=decision,
        reason_fa=reason_fa,
        reason_en=reason_en,
        legal_basis=legal_basis,
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event


async def deliver_result(
    commands: Commands,
    *,
    grant: AgencyGrant,
    tracking_code: str,
    service_id: str,
    document: DocumentRef | None,
    url: str | None,
    summary_fa: str,
    summary_en: str,
) -> ResultDelivered:
    """Record that an agency delivered the result of an approved request."""
    check_scope(grant, service_id)
    event = ResultDelivered(
        tracking_code=tracking_code,
        agency=grant.agency,
        service_id=service_id,
        result=document,
        result_url=url,
        summary_fa=summary_fa,
        summary_en=summary_en,
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event


async def resolve_complaint(
    commands: Commands,
    *,
    grant: AgencyGrant,
    tracking_code: str,
    service_id: str,
    complaint_id: str,
    resolution_fa: str,
    resolution_en: str,
) -> ComplaintResolved:
    """Record an agency's answer to the open complaint about one of its requests."""
    check_scope(grant, service_id)
    event = ComplaintResolved(
        tracking_code=tracking_code,
        agency=grant.agency,
        service_id=service_id,
        complaint_id=complaint_id,
        resolution_fa=resolution_fa,
        resolution_en=resolution_en,
        accept_by=utcnow() + _accept_by(commands),
    )
    await _record(commands, event)
    return event
