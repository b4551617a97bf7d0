"""The commit rule of the key-ordered consumer: a partition's commit never passes a record not yet done."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.keyed_consumer import PartitionProgress


def test_nothing_dispatched_commits_nothing() -> None:
    assert PartitionProgress().committable() is None


def test_commit_stops_at_the_lowest_record_not_done() -> None:
    progress = PartitionProgress()
    for offset in (10, 11, 12, 13):
        progress.dispatched(offset)
    assert progress.committable() == 10
    progress.done(12)
    progress.done(13)
    assert progress.committable() == 10, "later records done do not carry the commit past an earlier one"
    progress.done(10)
    assert progress.committable() == 11
    progress.done(11)
    assert progress.committable() == 14, "all done: the next record to read"


def test_an_offset_already_committed_is_not_committed_again() -> None:
    progress = PartitionProgress()
    progress.dispatched(5)
    progress.done(5)
    assert progress.committable() == 6
    progress.committed = 6
    assert progress.committable() is None


@given(st.permutations(list(range(30))), st.integers(min_value=0, max_value=30))
def test_any_completion_order_never_commits_past_an_undone_record(order: list[int], finished: int) -> None:
    progress = PartitionProgress()
    for offset in range(30):
        progress.dispatched(100 + offset)
    done = set(order[:finished])
    for offset in order[:finished]:
        progress.done(100 + offset)
    committable = progress.committable()
    assert committable is not None
    # Every record below the commit is done; the record at the commit (if any) is not.
    assert all(offset in done for offset in range(committable - 100))
    assert committable == 130 or (committable - 100) not in done
