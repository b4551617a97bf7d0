"""The request's states and the transition table, as data: pure, total and tested exhaustively.

Every (state, trigger) pair either gives a new state or is refused with a reason; a refused event is
recorded on the timeline, never applied. SLA breach and an open complaint are flags beside the state,
so their triggers keep the state as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RequestState(StrEnum):
    """Where a request stands."""

    SUBMITTED = "SUBMITTED"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    VERIFYING = "VERIFYING"
    NEEDS_CORRECTION = "NEEDS_CORRECTION"
    IN_REVIEW = "IN_REVIEW"
    APPROVED = "APPROVED"
    DELIVERED = "DELIVERED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


FINAL_STATES = frozenset({RequestState.DELIVERED, RequestState.REJECTED, RequestState.CANCELLED})
DECIDED_STATES = frozenset({RequestState.APPROVED}) | FINAL_STATES
WAITING_ON_CITIZEN = frozenset({RequestState.AWAITING_PAYMENT, RequestState.NEEDS_CORRECTION})


class Trigger(StrEnum):
    """What an event asks of the state machine (several events map onto one trigger)."""

    SUBMIT = "submit"
    REQUIRE_PAYMENT = "require_payment"
    CONFIRM_PAYMENT = "confirm_payment"
    INQUIRY_DONE = "inquiry_done"
    VERIFIED_APPROVE = "verified_approve"
    VERIFIED_REVIEW = "verified_review"
    VERIFIED_NEEDS_CORRECTION = "verified_needs_correction"
    VERIFIED_REJECT = "verified_reject"
    SUBMIT_CORRECTION = "submit_correction"
    DECIDE_APPROVE = "decide_approve"
    DECIDE_REJECT = "decide_reject"
    DECIDE_NEEDS_CORRECTION = "decide_needs_correction"
    DELIVER_RESULT = "deliver_result"
    CANCEL = "cancel"
    FILE_COMPLAINT = "file_complaint"
    RESOLVE_COMPLAINT = "resolve_complaint"
    BREACH_SLA = "breach_sla"


# The states' names as a citizen reads them (Persian, English): the timeline's words and notifications.
STATE_NAMES: dict[RequestState, tuple[str, str]] = {
    RequestState.SUBMITTED: ("ثبت‌شده", "submitted"),
    RequestState.AWAITING_PAYMENT: ("در انتظار پرداخت", "awaiting payment"),
    RequestState.VERIFYING: ("در حال بررسی", "being verified"),
    RequestState.NEEDS_CORRECTION: ("نیازمند اصلاح", "needs correction"),
    RequestState.IN_REVIEW: ("در حال بررسی کارشناس", "in the agency's review"),
    RequestState.APPROVED: ("تأییدشده", "approved"),
    RequestState.DELIVERED: ("تحویل‌شده", "delivered"),
    RequestState.REJECTED: ("ردشده", "rejected"),
    RequestState.CANCELLED: ("لغوشده", "cancelled"),
}
STATE_FA: dict[RequestState, str] = {state: fa for state, (fa, _en) in STATE_NAMES.items()}
TRIGGER_FA: dict[Trigger, str] = {
    Trigger.SUBMIT: "ثبت درخواست",
    Trigger.REQUIRE_PAYMENT: "درخواست پرداخت",
    Trigger.CONFIRM_PAYMENT: "تأیید پرداخت",
    Trigger.INQUIRY_DONE: "پاسخ استعلام",
    Trigger.VERIFIED_APPROVE: "تأیید پس از بررسی",
    Trigger.VERIFIED_REVIEW: "ارجاع به کارشناس",
    Trigger.VERIFIED_NEEDS_CORRECTION: "نیاز به اصلاح پس از بررسی",
    Trigger.VERIFIED_REJECT: "رد پس از بررسی",
    Trigger.SUBMIT_CORRECTION: "ثبت اصلاحیه",
    Trigger.DECIDE_APPROVE: "تأیید دستگاه",
    Trigger.DECIDE_REJECT: "رد دستگاه",
    Trigger.DECIDE_NEEDS_CORRECTION: "درخواست اصلاح از سوی دستگاه",
    Trigger.DELIVER_RESULT: "تحویل نتیجه",
    Trigger.CANCEL: "لغو درخواست",
    Trigger.FILE_COMPLAINT: "ثبت شکایت",
    Trigger.RESOLVE_COMPLAINT: "پاسخ به شکایت",
    Trigger.BREACH_SLA: "گذشتن مهلت قانونی",
}

S = RequestState
T = Trigger
_BEFORE_DECISION = (S.SUBMITTED, S.AWAITING_PAYMENT, S.VERIFYING, S.NEEDS_CORRECTION, S.IN_REVIEW)
_OPEN = (*_BEFORE_DECISION, S.APPROVED)

# The whole table. `None` as the source is "no request yet". Anything absent is refused.
TRANSITIONS: dict[tuple[RequestState | None, Trigger], RequestState] = {
    (None, T.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, T.REQUIRE_PAYMENT): S.AWAITING_PAYMENT,
    (S.AWAITING_PAYMENT, T.CONFIRM_PAYMENT): S.VERIFYING,
    (S.SUBMITTED, T.INQUIRY_DONE): S.VERIFYING,
    (S.VERIFYING, T.INQUIRY_DONE): S.VERIFYING,
    **{
        (source, trigger): target
        for source in (S.SUBMITTED, S.VERIFYING)
        for trigger, target in (
            (T.VERIFIED_APPROVE, S.APPROVED),
            (T.VERIFIED_REVIEW, S.IN_REVIEW),
            (T.VERIFIED_NEEDS_CORRECTION, S.NEEDS_CORRECTION),
            (T.VERIFIED_REJECT, S.REJECTED),
        )
    },
    (S.NEEDS_CORRECTION, T.SUBMIT_CORRECTION): S.VERIFYING,
    (S.IN_REVIEW, T.DECIDE_APPROVE): S.APPROVED,
    (S.IN_REVIEW, T.DECIDE_REJECT): S.REJECTED,
    (S.IN_REVIEW, T.DECIDE_NEEDS_CORRECTION): S.NEEDS_CORRECTION,
    (S.APPROVED, T.DELIVER_RESULT): S.DELIVERED,
    **{(source, T.CANCEL): S.CANCELLED for source in _BEFORE_DECISION},
    # Flags: the state stays; a complaint needs a decision or a breached SLA (checked by `apply`).
    **{(source, T.BREACH_SLA): source for source in _OPEN},
    **{(source, T.FILE_COMPLAINT): source for source in RequestState},
    **{(source, T.RESOLVE_COMPLAINT): source for source in RequestState},
}


@dataclass(frozen=True)
class Flags:
    """What sits beside the state."""

    sla_breached: bool = False
    complaint_open: bool = False


@dataclass(frozen=True)
class Applied:
    """The trigger was allowed: the request is now in `state` with `flags`."""

    previous: RequestState | None
    state: RequestState
    flags: Flags

    @property
    def changed(self) -> bool:
        """True when the state itself moved (flags alone do not make a StatusChanged)."""
        return self.previous != self.state


@dataclass(frozen=True)
class Refused:
    """The trigger is not allowed here; recorded on the timeline, never applied."""

    state: RequestState | None
    trigger: Trigger
    reason: str
    reason_fa: str


Outcome = Applied | Refused


def apply(state: RequestState | None, trigger: Trigger, flags: Flags = Flags()) -> Outcome:
    """Apply one trigger to a request in `state`; pure and total."""
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        where = "no request" if state is None else f"state {state.value}"
        where_fa = "پیش از ثبت درخواست" if state is None else f"در وضعیت «{STATE_FA[state]}»"
        return Refused(
            state,
            trigger,
            f"{trigger.value} is not allowed in {where}",
            f"«{TRIGGER_FA[trigger]}» {where_fa} مجاز نیست",
        )
    if trigger is Trigger.FILE_COMPLAINT:
        if flags.complaint_open:
            return Refused(state, trigger, "a complaint is already open", "شکایتی باز از پیش هست")
        if state not in DECIDED_STATES and not flags.sla_breached:
            return Refused(
                state,
                trigger,
                "a complaint needs a decision or a breached SLA",
                "شکایت پس از تصمیم یا گذشتن مهلت ممکن است",
            )
        return Applied(state, target, Flags(flags.sla_breached, complaint_open=True))
    if trigger is Trigger.RESOLVE_COMPLAINT:
        if not flags.complaint_open:
            return Refused(state, trigger, "no complaint is open", "شکایت بازی نیست")
        return Applied(state, target, Flags(flags.sla_breached, complaint_open=False))
    if trigger is Trigger.BREACH_SLA:
        if flags.sla_breached:
            return Refused(state, trigger, "the SLA breach is already recorded", "گذشتن مهلت پیش‌تر ثبت شده است")
        return Applied(state, target, Flags(sla_breached=True, complaint_open=flags.complaint_open))
    return Applied(state, target, flags)


def is_final(state: RequestState) -> bool:
    """A final state is never left."""
    return state in FINAL_STATES


def _successors() -> dict[RequestState, frozenset[RequestState]]:
    moves: dict[RequestState, set[RequestState]] = {state: set() for state in RequestState}
    for (source, _trigger), target in TRANSITIONS.items():
        if source is not None and target != source:
            moves[source].add(target)
    return {state: frozenset(targets) for state, targets in moves.items()}


_SUCCESSORS = _successors()


def later_states(state: RequestState) -> frozenset[RequestState]:
    """Every state a request in `state` can still move on to, through any events."""
    seen: set[RequestState] = set()
    frontier = [state]
    while frontier:
        for target in _SUCCESSORS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return frozenset(seen - {state})


def may_yet_allow(state: RequestState | None, trigger: Trigger) -> bool:
    """Whether events not yet seen could bring a request seen in `state` to a state that allows `trigger`.

    What tells a view that is merely behind (a decision seen while the request still looks VERIFYING) from a
    refusal that stands (a second decision on an APPROVED request). None: the submission itself may be unseen.
    """
    if state is None:
        return True
    return any((later, trigger) in TRANSITIONS for later in later_states(state))
