"""The access records' hash chain, one per citizen: how a record is linked, and how a stored chain is checked.

Each citizen's records are numbered 1, 2, 3 … in the order tracking stored them (the order of their partition),
and each carries `hash = sha256(prev_hash || canonical JSON of the record)`, `prev_hash` being the hash of the
record before it (`GENESIS` for the first). A record edited, removed or moved in the store then no longer fits
its neighbours, and `verify` says where and how. Pure: no I/O, no clock.

What a chain cannot show on its own: the last records removed (nothing follows them), or a suffix rewritten with
fresh hashes by someone holding the store. `desk.access` keeps every record forever, independently of tracking's
database, so the chain can be compared with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from shared.events import STAFF_KINDS, AccessRecorded, ActorKind

from .domain import NO_NAMES, Names

GENESIS: Final = "0" * 64


@dataclass(frozen=True)
class AccessEntry:
    """One access record as it is chained: every field of AccessRecorded v1 but its type and version."""

    access_id: str
    subject: str
    actor_kind: str
    actor: str
    organisation: str
    role: str
    resource_kind: str
    resource: str
    purpose: str
    client: str
    occurred_at: datetime

    def canonical(self) -> bytes:
        """The record's canonical JSON: sorted keys, no spaces, UTF-8, the time in UTC to the microsecond."""
        if self.occurred_at.tzinfo is None:
            raise ValueError("an access record's time is timezone-aware")
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "occurred_at"}
        fields["occurred_at"] = self.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_of(event: AccessRecorded) -> AccessEntry:
    """The chained form of an AccessRecorded."""
    return AccessEntry(
        access_id=str(event.access_id),
        subject=event.subject,
        actor_kind=event.actor_kind.value,
        actor=event.actor,
        organisation=event.organisation,
        role=event.role,
        resource_kind=event.resource_kind.value,
        resource=event.resource,
        purpose=event.purpose.value,
        client=event.client,
        occurred_at=event.occurred_at,
    )


def link_hash(prev_hash: str, entry: AccessEntry) -> str:
    """sha256(prev_hash || canonical JSON of the record), hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + entry.canonical()).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last link of a citizen's chain."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Link:
    """One stored record of a chain: its place, the hash it follows and its own."""

    seq: int
    entry: AccessEntry
    prev_hash: str
    hash: str


def append(heads: Mapping[str, Head], entries: Iterable[AccessEntry], *, stored: Container[str]) -> list[Link]:
    """The links that append `entries`, in order, to their citizens' chains whose last links are `heads`.

    An entry whose access_id is `stored` already, or repeats one earlier in `entries`, is left out: a record
    delivered again is chained once.
    """
    tips = dict(heads)
    seen: set[str] = set()
    links: list[Link] = []
    for entry in entries:
        if entry.access_id in stored or entry.access_id in seen:
            continue
        seen.add(entry.access_id)
        tip = tips.get(entry.subject, Head(0, GENESIS))
        link = Link(tip.seq + 1, entry, tip.hash, link_hash(tip.hash, entry))
        tips[entry.subject] = Head(link.seq, link.hash)
        links.append(link)
    return links


class Break(StrEnum):
    """How a chain is broken."""

    EDITED = "edited"
    MISSING = "missing"
    REORDERED = "reordered"


@dataclass(frozen=True)
class Verdict:
    """A chain's check: intact with `records` links, or broken at `seq` in the way `broken` says."""

    records: int
    broken: Break | None = None
    seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def describe(self) -> str:
        """One line for an operator; names the place by seq only (never the citizen)."""
        if self.broken is Break.EDITED:
            return f"chain broken: edited record at seq {self.seq} (its hash does not match its content)"
        if self.broken is Break.MISSING:
            return (
                f"chain broken: missing record(s) after seq {self.seq} "
                "(or the record at that seq was rewritten with a new hash)"
            )
        if self.broken is Break.REORDERED:
            return f"chain broken: reordered at seq {self.seq} (this record belongs elsewhere in the chain)"
        return f"chain intact: {self.records} records"


def verify(links: Sequence[Link]) -> Verdict:
    """Check one citizen's chain, given in seq order; the first break found is the verdict.

    A numbering gap is a missing record. A record whose hash does not match its content was edited, unless its
    content links two other hashes of the chain (it was moved without its hashes). A record that is whole but
    names another record of the chain (or the genesis) as its predecessor was moved there. A whole record naming
    a hash no record has follows a record that is gone (and the rest were renumbered) or one rewritten with a
    fresh hash.
    """
    known = {link.hash for link in links} | {GENESIS}
    previous = Head(0, GENESIS)
    for link in links:
        if link.seq != previous.seq + 1:
            return Verdict(len(links), Break.MISSING, previous.seq)
        if link_hash(link.prev_hash, link.entry) != link.hash:
            moved = _fits_elsewhere(link.entry, links, known)
            return Verdict(len(links), Break.REORDERED if moved else Break.EDITED, link.seq)
        if link.prev_hash != previous.hash:
            if link.prev_hash in known:
                return Verdict(len(links), Break.REORDERED, link.seq)
            return Verdict(len(links), Break.MISSING, previous.seq)
        previous = Head(link.seq, link.hash)
    return Verdict(len(links))


def _fits_elsewhere(entry: AccessEntry, links: Sequence[Link], known: set[str]) -> bool:
    """Whether a record's content, moved without its hashes, still links two hashes of the chain: then it was
    moved, not edited."""
    return any(link_hash(link.prev_hash, entry) in known for link in links) or link_hash(GENESIS, entry) in known


@dataclass(frozen=True)
class AccessShown:
    """One access as the citizen is shown it: a staff member is named only by role and organisation."""

    seq: int
    occurred_at: datetime
    actor_kind: str
    actor: str | None
    role: str
    organisation: str
    purpose: str
    resource_kind: str
    resource: str


def shown(link: Link) -> AccessShown:
    """What the citizen sees of one of their access records."""
    entry = link.entry
    staff = ActorKind(entry.actor_kind) in STAFF_KINDS
    return AccessShown(
        seq=link.seq,
        occurred_at=entry.occurred_at,
        actor_kind=entry.actor_kind,
        actor=None if staff else entry.actor,
        role=entry.role,
        organisation=entry.organisation,
        purpose=entry.purpose,
        resource_kind=entry.resource_kind,
        resource=entry.resource,
    )


# The words of a citizen's "who looked" list: what was read, why, and who read it when no organisation names them.
_RESOURCE_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "request": ("درخواست شما", "your request"),
    "history": ("فهرست درخواست‌های شما", "the list of your requests"),
    "document": ("مدرکی از درخواست شما", "a document of your request"),
    "result": ("نتیجهٔ درخواست شما", "the result of your request"),
    "access_log": ("فهرست دسترسی‌ها به پروندهٔ شما", "the list of accesses to your file"),
    "notifications": ("پیام‌های فرستاده‌شده دربارهٔ درخواست شما", "the messages sent about your request"),
}
_PURPOSE_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "follow_up": ("برای پیگیری", "follow-up"),
    "review": ("برای بررسی", "review"),
    "verification": ("برای استعلام", "verification"),
    "support": ("برای پشتیبانی", "support"),
    "oversight": ("برای نظارت", "oversight"),
}
_ACTOR_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "operator": ("کارمند دفتر پیشخوان", "A service-office operator"),
    "service": ("سامانهٔ میز خدمت", "The service desk's system"),
}


def _who(access: AccessShown, names: Names) -> tuple[str, str]:
    """Who read, as the citizen is told: an agency by its name, its staff by role in it, others by kind."""
    if access.actor_kind == ActorKind.AGENCY:
        return names.agency(access.organisation)
    if access.actor_kind == ActorKind.AGENCY_STAFF:
        agency_fa, agency_en = names.agency(access.organisation)
        return f"کارشناس {agency_fa}", f"An officer of {agency_en}"
    return _ACTOR_WORDS.get(access.actor_kind, ("یکی از کارکنان میز خدمت", "Someone at the service desk"))


def describe_access(access: AccessShown, names: Names = NO_NAMES) -> tuple[str, str]:
    """One line (Persian, English) for an access in the citizen's list: who looked at what, and why; a staff
    member only by role and organisation, as `shown` leaves them."""
    what_fa, what_en = _RESOURCE_WORDS.get(access.resource_kind, ("اطلاعات شما", "your data"))
    why_fa, why_en = _PURPOSE_WORDS.get(access.purpose, ("برای کاری دیگر", "another purpose"))
    if access.actor_kind == ActorKind.CITIZEN:
        return f"{what_fa} را {why_fa} دیدید.", f"You looked at {what_en} for {why_en}."
    who_fa, who_en = _who(access, names)
    return f"{who_fa} {what_fa} را {why_fa} دید.", f"{who_en} looked at {what_en} for {why_en}."
