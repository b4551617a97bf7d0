"""The request state machine: every (state, trigger) pair, and random sequences of triggers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.state_machine import (
    FINAL_STATES,
    TRANSITIONS,
    Applied,
    Flags,
    Refused,
    RequestState,
    Trigger,
    apply,
    is_final,
    later_states,
    may_yet_allow,
)

S = RequestState
T = Trigger
FLAG_TRIGGERS = {T.FILE_COMPLAINT, T.RESOLVE_COMPLAINT, T.BREACH_SLA}

# The expected state changes, written out by hand from DESIGN.md §4 (flags are checked separately).
EXPECTED_MOVES: dict[tuple[RequestState | None, Trigger], RequestState] = {
    (None, T.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, T.REQUIRE_PAYMENT): S.AWAITING_PAYMENT,
    (S.AWAITING_PAYMENT, T.CONFIRM_PAYMENT): S.VERIFYING,
    (S.SUBMITTED, T.INQUIRY_DONE): S.VERIFYING,
    (S.VERIFYING, T.INQUIRY_DONE): S.VERIFYING,
    (S.SUBMITTED, T.VERIFIED_APPROVE): S.APPROVED,
    (S.SUBMITTED, T.VERIFIED_REVIEW): S.IN_REVIEW,
    (S.SUBMITTED, T.VERIFIED_NEEDS_CORRECTION): S.NEEDS_CORRECTION,
    (S.SUBMITTED, T.VERIFIED_REJECT): S.REJECTED,
    (S.VERIFYING, T.VERIFIED_APPROVE): S.APPROVED,
    (S.VERIFYING, T.VERIFIED_REVIEW): S.IN_REVIEW,
    (S.VERIFYING, T.VERIFIED_NEEDS_CORRECTION): S.NEEDS_CORRECTION,
    (S.VERIFYING, T.VERIFIED_REJECT): S.REJECTED,
    (S.NEEDS_CORRECTION, T.SUBMIT_CORRECTION): S.VERIFYING,
    (S.IN_REVIEW, T.DECIDE_APPROVE): S.APPROVED,
    (S.IN_REVIEW, T.DECIDE_REJECT): S.REJECTED,
    (S.IN_REVIEW, T.DECIDE_NEEDS_CORRECTION): S.NEEDS_CORRECTION,
    (S.APPROVED, T.DELIVER_RESULT): S.DELIVERED,
    **{
        (s, T.CANCEL): S.CANCELLED
        for s in (S.SUBMITTED, S.AWAITING_PAYMENT, S.VERIFYING, S.NEEDS_CORRECTION, S.IN_REVIEW)
    },
}


def test_every_state_and_trigger_pair_is_either_the_expected_move_or_refused() -> None:
    for state, trigger in itertools.product([None, *RequestState], Trigger):
        if trigger in FLAG_TRIGGERS:
            continue
        outcome = apply(state, trigger)
        expected = EXPECTED_MOVES.get((state, trigger))
        if expected is None:
            assert isinstance(outcome, Refused), (state, trigger, outcome)
            assert outcome.reason
        else:
            assert outcome == Applied(state, expected, Flags()), (state, trigger)


def test_the_table_holds_nothing_beyond_the_expected_moves_and_flags() -> None:
    moves = {key: value for key, value in TRANSITIONS.items() if key[1] not in FLAG_TRIGGERS}
    assert moves == EXPECTED_MOVES


def test_final_states_are_never_left() -> None:
    for state, trigger in itertools.product(FINAL_STATES, Trigger):
        outcome = apply(state, trigger, Flags(sla_breached=True, complaint_open=trigger is T.RESOLVE_COMPLAINT))
        if isinstance(outcome, Applied):
            assert outcome.state == state


def test_complaint_needs_a_decision_or_a_breached_sla() -> None:
    assert isinstance(apply(S.VERIFYING, T.FILE_COMPLAINT), Refused)
    breached = apply(S.VERIFYING, T.FILE_COMPLAINT, Flags(sla_breached=True))
    assert breached == Applied(S.VERIFYING, S.VERIFYING, Flags(sla_breached=True, complaint_open=True))
    decided = apply(S.REJECTED, T.FILE_COMPLAINT)
    assert isinstance(decided, Applied) and decided.flags.complaint_open and not decided.changed


def test_a_second_complaint_while_one_is_open_is_refused() -> None:
    assert isinstance(apply(S.APPROVED, T.FILE_COMPLAINT, Flags(complaint_open=True)), Refused)


def test_resolving_needs_an_open_complaint() -> None:
    assert isinstance(apply(S.APPROVED, T.RESOLVE_COMPLAINT), Refused)
    resolved = apply(S.APPROVED, T.RESOLVE_COMPLAINT, Flags(complaint_open=True))
    assert resolved == Applied(S.APPROVED, S.APPROVED, Flags())


def test_sla_breach_is_recorded_once_and_only_while_open() -> None:
    first = apply(S.IN_REVIEW, T.BREACH_SLA)
    assert first == Applied(S.IN_REVIEW, S.IN_REVIEW, Flags(sla_breached=True))
    assert isinstance(apply(S.IN_REVIEW, T.BREACH_SLA, Flags(sla_breached=True)), Refused)
    for state in FINAL_STATES:
        assert isinstance(apply(state, T.BREACH_SLA), Refused)


def test_nothing_but_a_submission_starts_a_request() -> None:
    for trigger in Trigger:
        outcome = apply(None, trigger)
        assert isinstance(outcome, Applied) == (trigger is T.SUBMIT)


@given(st.lists(st.sampled_from(list(Trigger)), max_size=40))
def test_any_sequence_of_triggers_keeps_the_machine_consistent(triggers: list[Trigger]) -> None:
    state: RequestState | None = None
    flags = Flags()
    reached_final: RequestState | None = None
    for trigger in triggers:
        outcome = apply(state, trigger, flags)
        if isinstance(outcome, Refused):
            assert outcome.state == state
            continue
        assert outcome.previous == state
        if reached_final is not None:
            assert outcome.state == reached_final, "a final state was left"
        state, flags = outcome.state, outcome.flags
        if is_final(state):
            reached_final = state
    if state is None:
        assert flags == Flags()


def test_later_states_follow_the_table() -> None:
    assert later_states(RequestState.APPROVED) == {RequestState.DELIVERED}
    assert later_states(RequestState.CANCELLED) == frozenset()
    assert RequestState.IN_REVIEW in later_states(RequestState.VERIFYING)
    assert RequestState.VERIFYING in later_states(RequestState.NEEDS_CORRECTION)


@pytest.mark.parametrize(
    ("state", "trigger", "expected"),
    [
        (None, Trigger.DECIDE_APPROVE, True),
        (RequestState.VERIFYING, Trigger.DECIDE_APPROVE, True),
        (RequestState.SUBMITTED, Trigger.DECIDE_REJECT, True),
        (RequestState.APPROVED, Trigger.DECIDE_APPROVE, False),
        (RequestState.CANCELLED, Trigger.DECIDE_APPROVE, False),
        (RequestState.REJECTED, Trigger.DECIDE_NEEDS_CORRECTION, False),
        (RequestState.IN_REVIEW, Trigger.DELIVER_RESULT, True),
        (RequestState.DELIVERED, Trigger.DELIVER_RESULT, False),
        (RequestState.REJECTED, Trigger.DELIVER_RESULT, False),
        (RequestState.CANCELLED, Trigger.CANCEL, False),
    ],
)
def test_may_yet_allow_tells_a_view_behind_from_a_refusal_that_stands(
    state: RequestState | None, trigger: Trigger, expected: bool
) -> None:
    assert may_yet_allow(state, trigger) is expected
