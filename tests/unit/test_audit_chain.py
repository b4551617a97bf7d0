"""The access records' chain rule (services/tracking/domain_audit.py): how records link, and that an edited,
removed or moved record is found, and where."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracking.domain_audit import (
    GENESIS,
    AccessEntry,
    Break,
    Head,
    Link,
    append,
    entry_of,
    link_hash,
    shown,
    verify,
)
from shared.events import AccessRecorded, ActorKind, Purpose, ResourceKind

SUBJECT = "a" * 64
OTHER = "b" * 64
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def entry(n: int, *, subject: str = SUBJECT, actor_kind: str = "citizen", actor: str = "self") -> AccessEntry:
    return AccessEntry(
        access_id=str(uuid.UUID(int=n + (0 if subject == SUBJECT else 10**6))),
        subject=subject,
        actor_kind=actor_kind,
        actor=actor,
        organisation="desk",
        role="citizen",
        resource_kind="request",
        resource=f"{100000000000000 + n}",
        purpose="follow_up",
        client="10.0.0.1",
        occurred_at=T0 + timedelta(seconds=n, microseconds=n),
    )


def chain(count: int) -> list[Link]:
    return append({}, [entry(n) for n in range(1, count + 1)], stored=())


def test_the_first_record_follows_the_genesis_and_each_next_the_one_before() -> None:
    links = chain(3)
    assert [link.seq for link in links] == [1, 2, 3]
    assert links[0].prev_hash == GENESIS
    assert [link.prev_hash for link in links[1:]] == [link.hash for link in links[:-1]]
    assert all(link.hash == link_hash(link.prev_hash, link.entry) for link in links)
    assert verify(links).describe() == "chain intact: 3 records"


def test_an_empty_chain_is_intact() -> None:
    assert verify([]).intact and verify([]).records == 0


def test_appending_continues_each_citizens_own_chain_from_its_head() -> None:
    first = chain(2)
    heads = {SUBJECT: Head(first[-1].seq, first[-1].hash)}
    more = append(heads, [entry(3), entry(1, subject=OTHER), entry(4)], stored=())
    assert [(link.entry.subject, link.seq) for link in more] == [(SUBJECT, 3), (OTHER, 1), (SUBJECT, 4)]
    assert more[0].prev_hash == first[-1].hash and more[1].prev_hash == GENESIS
    assert verify(first + [link for link in more if link.entry.subject == SUBJECT]).intact


def test_a_record_delivered_again_is_chained_once() -> None:
    links = chain(2)
    heads = {SUBJECT: Head(2, links[-1].hash)}
    again = append(heads, [entry(2), entry(3), entry(3)], stored={entry(1).access_id, entry(2).access_id})
    assert [link.entry.access_id for link in again] == [entry(3).access_id]
    assert again[0].seq == 3


def test_the_canonical_json_is_sorted_compact_and_in_utc_to_the_microsecond() -> None:
    tehran = dataclasses.replace(entry(1), occurred_at=entry(1).occurred_at.astimezone(timezone(timedelta(hours=3.5))))
    assert tehran.canonical() == entry(1).canonical()
    text = entry(1).canonical().decode()
    assert text.startswith('{"access_id":') and " " not in text
    assert '"occurred_at":"2026-01-01T08:00:01.000001Z"' in text


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(entry(1), occurred_at=datetime(2026, 1, 1)).canonical()


FIELDS = [name for name in AccessEntry.__dataclass_fields__ if name != "occurred_at"]


@pytest.mark.parametrize("field", [*FIELDS, "occurred_at"])
def test_an_edited_field_is_found_at_its_record(field: str) -> None:
    links = chain(5)
    original = links[2].entry
    changed: dict[str, Any] = {
        field: original.occurred_at + timedelta(microseconds=1)
        if field == "occurred_at"
        else "x" + getattr(original, field)
    }
    links[2] = dataclasses.replace(links[2], entry=dataclasses.replace(original, **changed))
    verdict = verify(links)
    assert (verdict.broken, verdict.seq) == (Break.EDITED, 3)
    assert verdict.describe().startswith("chain broken: edited record at seq 3")


def test_a_record_rewritten_with_a_fresh_hash_breaks_the_next_link() -> None:
    links = chain(5)
    edited = dataclasses.replace(links[2].entry, purpose="support")
    links[2] = dataclasses.replace(links[2], entry=edited, hash=link_hash(links[2].prev_hash, edited))
    assert (verify(links).broken, verify(links).seq) == (Break.MISSING, 3)


def test_a_removed_record_is_a_gap_after_the_one_before() -> None:
    links = chain(5)
    del links[2]
    verdict = verify(links)
    assert (verdict.broken, verdict.seq) == (Break.MISSING, 2)
    assert verdict.describe().startswith("chain broken: missing record(s) after seq 2")


def test_a_removed_record_with_the_rest_renumbered_is_still_found() -> None:
    links = chain(5)
    del links[2]
    links = [dataclasses.replace(link, seq=seq) for seq, link in enumerate(links, start=1)]
    assert (verify(links).broken, verify(links).seq) == (Break.MISSING, 2)


def test_the_first_record_removed_is_found() -> None:
    links = chain(3)[1:]
    assert (verify(links).broken, verify(links).seq) == (Break.MISSING, 0)


@pytest.mark.parametrize(("a", "b"), [(1, 2), (2, 3), (0, 4), (1, 3)])
def test_two_records_swapped_whole_are_found_as_reordered(a: int, b: int) -> None:
    links = chain(5)
    first, second = links[a], links[b]
    links[a] = dataclasses.replace(second, seq=first.seq)
    links[b] = dataclasses.replace(first, seq=second.seq)
    verdict = verify(links)
    assert (verdict.broken, verdict.seq) == (Break.REORDERED, a + 1)
    assert verdict.describe().startswith(f"chain broken: reordered at seq {a + 1}")


def test_two_records_contents_swapped_without_their_hashes_are_found_as_reordered() -> None:
    links = chain(5)
    links[1], links[2] = (
        dataclasses.replace(links[1], entry=links[2].entry),
        dataclasses.replace(links[2], entry=links[1].entry),
    )
    assert (verify(links).broken, verify(links).seq) == (Break.REORDERED, 2)


@given(st.integers(min_value=0, max_value=9), st.sampled_from(FIELDS), st.text(min_size=1, max_size=5))
def test_any_edit_of_any_record_is_found_at_that_record(index: int, field: str, suffix: str) -> None:
    links = chain(10)
    edited = dataclasses.replace(links[index].entry, **{field: getattr(links[index].entry, field) + suffix})
    links[index] = dataclasses.replace(links[index], entry=edited)
    assert (verify(links).broken, verify(links).seq) == (Break.EDITED, index + 1)


def test_the_citizen_sees_staff_only_by_role_and_organisation() -> None:
    staff = append({}, [entry(1, actor_kind="agency_staff", actor="staff-4711")], stored=())[0]
    agency = append({}, [entry(2, actor_kind="agency", actor="judiciary")], stored=())[0]
    assert shown(staff).actor is None and shown(staff).organisation == "desk"
    assert shown(agency).actor == "judiciary"


def test_an_event_is_chained_with_every_field() -> None:
    event = AccessRecorded(
        subject=SUBJECT,
        actor_kind=ActorKind.OPERATOR,
        actor="op-7",
        organisation="office-12",
        role="operator",
        resource_kind=ResourceKind.RESULT,
        resource="123451234512345",
        purpose=Purpose.SUPPORT,
        client="10.1.2.3",
        occurred_at=T0,
    )
    made = entry_of(event)
    assert made.access_id == str(event.access_id)
    assert (made.actor_kind, made.resource_kind, made.purpose) == ("operator", "result", "support")
    assert made.occurred_at == T0
