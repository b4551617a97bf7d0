"""How request events move the projection: pure mapping from events to triggers and to timeline text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.domain.digits import to_persian_digits
from shared.domain.jalali import to_jalali_text
from shared.domain.state_machine import STATE_NAMES, RequestState, Trigger
from shared.events import (
    AgencyCommand,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    EventBase,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestCancelled,
    RequestDecided,
    RequestEvent,
    RequestSubmitted,
    ResultDelivered,
    SlaBreached,
    VerificationCompleted,
)

_VERIFIED = {
    NextStep.APPROVE: Trigger.VERIFIED_APPROVE,
    NextStep.AGENCY_REVIEW: Trigger.VERIFIED_REVIEW,
    NextStep.NEEDS_CORRECTION: Trigger.VERIFIED_NEEDS_CORRECTION,
    NextStep.REJECT: Trigger.VERIFIED_REJECT,
}

_DECIDED = {
    Decision.APPROVE: Trigger.DECIDE_APPROVE,
    Decision.REJECT: Trigger.DECIDE_REJECT,
    Decision.NEEDS_CORRECTION: Trigger.DECIDE_NEEDS_CORRECTION,
}

_INQUIRY_FA = {
    InquiryOutcome.PASSED: "تأیید شد",
    InquiryOutcome.FAILED: "تأیید نشد",
    InquiryOutcome.UNAVAILABLE: "در دسترس نبود",
}

_WAITING_FOR_CORRECTION = ("در انتظار اصلاح از سوی شما", "Waiting for your correction")
_WAITING_FOR_REVIEW = ("در انتظار بررسی کارشناس دستگاه", "Waiting for the agency's review")
_WAITING_FOR_RESULT = ("در انتظار تحویل نتیجه از سوی دستگاه", "Waiting for the agency to deliver the result")
_WAITING_FOR_VERIFICATION = ("در انتظار نتیجهٔ بررسی", "Waiting for the verification to finish")
_WAITING_FOR_COMPLAINT = ("در انتظار پاسخ دستگاه به شکایت شما", "Waiting for the agency's answer to your complaint")

# What a request in each state waits for, when no event says more (e.g. once a complaint is answered).
_WAITING_IN_STATE: dict[RequestState, tuple[str | None, str | None]] = {
    RequestState.SUBMITTED: ("در انتظار استعلام‌های برخط", "Waiting for the online inquiries"),
    RequestState.AWAITING_PAYMENT: ("در انتظار پرداخت هزینه", "Waiting for the fee to be paid"),
    RequestState.VERIFYING: _WAITING_FOR_VERIFICATION,
    RequestState.NEEDS_CORRECTION: _WAITING_FOR_CORRECTION,
    RequestState.IN_REVIEW: _WAITING_FOR_REVIEW,
    RequestState.APPROVED: _WAITING_FOR_RESULT,
}


# The trigger of each event type whose trigger does not depend on what the event says.
_TRIGGERS: dict[type[EventBase], Trigger] = {
    RequestSubmitted: Trigger.SUBMIT,
    InquiryCompleted: Trigger.INQUIRY_DONE,
    CorrectionSubmitted: Trigger.SUBMIT_CORRECTION,
    RequestCancelled: Trigger.CANCEL,
    ComplaintFiled: Trigger.FILE_COMPLAINT,
    ComplaintResolved: Trigger.RESOLVE_COMPLAINT,
    SlaBreached: Trigger.BREACH_SLA,
    ResultDelivered: Trigger.DELIVER_RESULT,
}


def trigger_for(event: RequestEvent) -> Trigger:
    """The state-machine trigger an event carries."""
    if isinstance(event, VerificationCompleted):
        return _VERIFIED[event.next_step]
    if isinstance(event, RequestDecided):
        return _DECIDED[event.decision]
    return _TRIGGERS[type(event)]


@dataclass(frozen=True)
class Names:
    """The catalog's Persian and English names of agencies, services and inquiries (id → (fa, en)), so the
    timeline says "استعلام هویت از سازمان ثبت احوال کشور" rather than the ids events carry."""

    agencies: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    services: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    inquiries: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def agency(self, agency_id: str) -> tuple[str, str]:
        """An agency's names; one this deployment does not know is "the agency" (an id is no Persian)."""
        return self.agencies.get(agency_id, ("دستگاه مسئول", f"agency {agency_id}"))

    def service(self, service_id: str) -> tuple[str, str]:
        """A service's titles."""
        return self.services.get(service_id, ("خدمتی دیگر", f"service {service_id}"))

    def inquiry(self, inquiry_id: str) -> tuple[str, str]:
        """An inquiry's names."""
        return self.inquiries.get(inquiry_id, ("استعلام", f"Inquiry {inquiry_id}"))


NO_NAMES = Names()


@dataclass(frozen=True)
class Description:
    """Timeline text for an event, and what the request waits for afterwards."""

    detail_fa: str | None
    detail_en: str | None
    waiting_for_fa: str | None
    waiting_for_en: str | None


@dataclass(frozen=True)
class NotAuthorised:
    """An agency command from an agency, or for a service, that is not the request's own: refused, never applied."""

    reason_fa: str
    reason_en: str


def check_authority(
    event: RequestEvent, *, agency: str, service_id: str, names: Names = NO_NAMES
) -> NotAuthorised | None:
    """Whether an agency command comes from the request's own agency for the request's own service."""
    if not isinstance(event, RequestDecided | ResultDelivered | ComplaintResolved):
        return None
    command: AgencyCommand = event
    if command.agency != agency:
        return NotAuthorised(
            f"«{names.agency(command.agency)[0]}» مسئول این درخواست نیست.",
            f"agency {command.agency} is not this request's agency",
        )
    if command.service_id != service_id:
        return NotAuthorised(
            f"این درخواست برای خدمت «{names.service(command.service_id)[0]}» نیست.",
            f"the request is not for service {command.service_id}",
        )
    return None


def check_complaint(event: RequestEvent, *, open_complaint_id: str | None) -> NotAuthorised | None:
    """Whether a resolution answers the request's open complaint (another id, or none open, is refused).

    intake checks this before it accepts the command; this is the guard for a race it could not see.
    """
    if not isinstance(event, ComplaintResolved) or open_complaint_id is None:
        # With no complaint open the state machine refuses the resolution itself ("no complaint is open").
        return None
    if event.complaint_id != open_complaint_id:
        return NotAuthorised(
            f"شکایت «{event.complaint_id}» شکایت بازِ این درخواست نیست.",
            f"complaint {event.complaint_id} is not the request's open complaint",
        )
    return None


def status_reason(event: RequestEvent) -> tuple[str | None, str | None]:
    """The reason a StatusChanged carries: the system's or the agency's words, never a citizen's free text."""
    if isinstance(event, VerificationCompleted | InquiryCompleted | RequestDecided):
        return event.reason_fa, event.reason_en
    return None, None


def _with(text: str, extra: str | None) -> str:
    return f"{text} {extra}".strip() if extra else text


def _describe_verification(event: VerificationCompleted) -> Description:
    waiting = {
        NextStep.APPROVE: (None, None),
        NextStep.AGENCY_REVIEW: _WAITING_FOR_REVIEW,
        NextStep.NEEDS_CORRECTION: _WAITING_FOR_CORRECTION,
        NextStep.REJECT: (None, None),
    }[event.next_step]
    return Description(
        event.reason_fa or "بررسی انجام شد.",
        event.reason_en or f"Verification finished: {event.next_step.value}.",
        waiting[0],
        waiting[1],
    )


def _describe_cancellation(event: RequestCancelled) -> Description:
    given = event.reason_fa or event.reason_en
    return Description(
        _with("درخواست به خواست شما لغو شد.", f"علت: {given}" if given else None),
        _with("The request was cancelled at your request.", f"Reason: {given}" if given else None),
        None,
        None,
    )


def _describe_decision(event: RequestDecided, agency_fa: str, agency_en: str) -> Description:
    if event.decision is Decision.APPROVE:
        return Description(
            _with(f"{agency_fa} درخواست را تأیید کرد.", event.reason_fa),
            _with(f"{agency_en} approved the request.", event.reason_en),
            *_WAITING_FOR_RESULT,
        )
    if event.decision is Decision.REJECT:
        return Description(
            f"{agency_fa} درخواست را رد کرد: {event.reason_fa} (مستند قانونی: {event.legal_basis})",
            f"{agency_en} rejected the request: {event.reason_en} (legal basis: {event.legal_basis})",
            None,
            None,
        )
    return Description(
        f"{agency_fa} اصلاح درخواست را خواست: {event.reason_fa}",
        f"{agency_en} asked for a correction: {event.reason_en}",
        *_WAITING_FOR_CORRECTION,
    )


def _describe_breach(event: SlaBreached, state: RequestState | None) -> Description:
    waiting = _WAITING_IN_STATE.get(state, (None, None)) if state is not None else (None, None)
    due = to_persian_digits(to_jalali_text(event.due_on))
    return Description(
        f"مهلت قانونی انجام درخواست ({due}، {to_persian_digits(str(event.duration_working_days))} روز کاری) گذشت. "
        "می‌توانید شکایت ثبت کنید.",
        f"The request is past its due date ({event.due_on.isoformat()}, {event.duration_working_days} "
        "working days). You may file a complaint.",
        waiting[0],
        waiting[1],
    )


def _describe_result(event: ResultDelivered) -> Description:
    where_fa = f" (نشانی: {event.result_url})" if event.result_url else " (سند در پرونده موجود است)"
    where_en = f" (link: {event.result_url})" if event.result_url else " (the document is on file)"
    return Description(
        f"نتیجه تحویل شد: {event.summary_fa}{where_fa}",
        f"The result was delivered: {event.summary_en}{where_en}",
        None,
        None,
    )


def describe(event: RequestEvent, state: RequestState | None = None, names: Names = NO_NAMES) -> Description:
    """Words for the timeline, so a citizen never has to call to ask what the request is waiting for."""
    # `state` is where the request stands after the event: what it waits for when the event does not say.
    agency_fa, agency_en = (
        names.agency(event.agency) if isinstance(event, AgencyCommand | InquiryCompleted) else ("", "")
    )
    if isinstance(event, RequestSubmitted):
        return Description(
            "درخواست ثبت شد.",
            "The request was submitted.",
            "در انتظار استعلام‌های برخط",
            "Waiting for the online inquiries",
        )
    if isinstance(event, InquiryCompleted):
        return Description(
            _with(f"{names.inquiry(event.inquiry)[0]} از {agency_fa}: {_INQUIRY_FA[event.outcome]}.", event.reason_fa),
            _with(f"{names.inquiry(event.inquiry)[1]} at {agency_en}: {event.outcome.value}.", event.reason_en),
            *_WAITING_FOR_VERIFICATION,
        )
    if isinstance(event, VerificationCompleted):
        return _describe_verification(event)
    if isinstance(event, CorrectionSubmitted):
        return Description(
            "اصلاحات شما ثبت شد و اطلاعات دوباره بررسی می‌شود.",
            "Your correction was received; the request is verified again.",
            "در انتظار بررسی دوبارهٔ اطلاعات اصلاح‌شده",
            "Waiting for your corrected details to be verified",
        )
    if isinstance(event, RequestCancelled):
        return _describe_cancellation(event)
    if isinstance(event, ComplaintFiled):
        return Description(
            f"شکایت شما ثبت شد (شناسهٔ پیگیری شکایت: {event.complaint_id}).",
            f"Your complaint was filed (complaint reference: {event.complaint_id}).",
            *_WAITING_FOR_COMPLAINT,
        )
    if isinstance(event, ComplaintResolved):
        waiting = _WAITING_IN_STATE.get(state, (None, None)) if state is not None else (None, None)
        return Description(
            f"پاسخ {agency_fa} به شکایت شما: {event.resolution_fa}",
            f"The answer of {agency_en} to your complaint: {event.resolution_en}",
            waiting[0],
            waiting[1],
        )
    if isinstance(event, RequestDecided):
        return _describe_decision(event, agency_fa, agency_en)
    if isinstance(event, SlaBreached):
        return _describe_breach(event, state)
    assert isinstance(event, ResultDelivered)
    return _describe_result(event)


# --- notifications (desk.notifications) ------------------------------------------------------------

# How far a notification has got: `sent` is overtaken by either receipt; `delivered` and `failed` are final.
# notify never leaves a final state, so a notification has at most one of them and the first one stays.
_NOTIFICATION_PROGRESS: dict[str, int] = {"sent": 0, "delivered": 1, "failed": 1}
NOTIFICATION_STATES = tuple(_NOTIFICATION_PROGRESS)


def notification_outcome_wins(stored: str | None, arriving: str) -> bool:
    """Whether an arriving outcome replaces the notification's stored state (None: nothing stored yet).

    Outcomes come twice or out of order: only a step forward counts, so a redelivery, a `sent` after its
    receipt or a second final state changes nothing.
    """
    if arriving not in _NOTIFICATION_PROGRESS:
        raise ValueError(f"unknown notification state {arriving!r}")
    if stored is None:
        return True
    return _NOTIFICATION_PROGRESS[arriving] > _NOTIFICATION_PROGRESS.get(stored, -1)


def states_overtaken_by(arriving: str) -> list[str]:
    """The stored states an arriving outcome replaces (the same rule, as a set a conditional UPDATE can use)."""
    return [stored for stored in NOTIFICATION_STATES if notification_outcome_wins(stored, arriving)]


_CHANNEL_NAMES: dict[str, tuple[str, str]] = {"sms": ("پیامک", "SMS"), "email": ("ایمیل", "email")}
_OUTCOME_WORDS: dict[tuple[str, str], tuple[str, str]] = {
    ("sms", "sent"): ("ارسال شد", "was sent"),
    ("sms", "delivered"): ("به تلفن همراه شما رسید", "reached your phone"),
    ("sms", "failed"): ("به تلفن همراه شما نرسید", "could not be delivered to your phone"),
    ("email", "sent"): ("ارسال شد", "was sent"),
    ("email", "delivered"): ("به صندوق ایمیل شما رسید", "reached your mailbox"),
    ("email", "failed"): ("به صندوق ایمیل شما نرسید", "could not be delivered to your mailbox"),
}


def describe_notification(status: str, channel: str, state: str) -> tuple[str, str]:
    """Timeline-style words (Persian, English) for one notification: which status it told about, how it went."""
    try:
        status_fa, status_en = STATE_NAMES[RequestState(status)]
    except ValueError:  # a state a newer build added: its code reads better than nothing
        status_fa, status_en = status, status
    channel_fa, channel_en = _CHANNEL_NAMES.get(channel, (channel, channel))
    done_fa, done_en = _OUTCOME_WORDS.get((channel, state), (state, state))
    return (
        f"{channel_fa} تغییر وضعیت درخواست به «{status_fa}» {done_fa}.",
        f"The {channel_en} about the request becoming “{status_en}” {done_en}.",
    )
