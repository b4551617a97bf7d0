"""Pure rules of commands on a request, no I/O: whether a command may be given on a request as it stands and,
when not, why, in words a citizen or an agency can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.domain.state_machine import (
    DECIDED_STATES,
    Flags,
    Refused,
    RequestState,
    Trigger,
    apply,
    may_yet_allow,
)

_DECISIONS = frozenset({Trigger.DECIDE_APPROVE, Trigger.DECIDE_REJECT, Trigger.DECIDE_NEEDS_CORRECTION})


def explain_refusal(trigger: Trigger, state: RequestState | None, flags: Flags) -> tuple[str, str]:
    """The Persian and English reason a command is not allowed in the request's current state."""
    return _citizen_refusal(trigger, state, flags) or _agency_refusal(trigger, state, flags)


def _citizen_refusal(trigger: Trigger, state: RequestState | None, flags: Flags) -> tuple[str, str] | None:
    """Why a citizen's command (or any command on a cancelled request) is refused; None for an agency's."""
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
    return None


def _agency_refusal(trigger: Trigger, state: RequestState | None, flags: Flags) -> tuple[str, str]:
    """Why an agency's command is refused in this state."""
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
