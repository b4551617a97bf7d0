"""The access records' use cases: append each to its citizen's chain, check a chain, list who looked.

`AccessChain.append` is what tracking's desk.access consumer calls per record. The consumer hands records of one
citizen one after another and different citizens' at once, so appends are gathered for a moment and written
together (group commit: one transaction, one read of the chains' heads, one executemany), each caller returning
once its record is stored. A failing database is retried with backoff, never skipped, like the projection's fold:
an access record dropped to a dead-letter topic would leave a hole nobody sees in its citizen's chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from shared.kafka import scrub

from .domain_audit import AccessEntry, AccessShown, Link, Verdict, append, shown, verify
from .store import Sessions
from .store_audit import chain_page, heads_of, insert_links, newest_page, stored_access_ids

log = logging.getLogger(__name__)

CHAINED = Counter("khedmat_tracking_access_records_stored_total", "Access records appended to their citizen's chain")
# Links read per query when checking a chain; a whole chain is held to find where a moved record came from.
VERIFY_PAGE = 1000


async def store_entries(sessions: Sessions, entries: Sequence[AccessEntry]) -> int:
    """Append the entries to their chains in one transaction (known access ids skipped); returns how many new."""
    async with sessions() as session, session.begin():
        connection = await session.connection()
        heads = await heads_of(connection, [entry.subject for entry in entries])
        stored = await stored_access_ids(connection, [entry.access_id for entry in entries])
        links = append(heads, entries, stored=stored)
        await insert_links(connection, links)
    CHAINED.inc(len(links))
    return len(links)


class AccessChain:
    """Appends access records to their citizens' chains, those arriving together in one transaction."""

    def __init__(
        self, sessions: Sessions, *, max_batch: int = 256, linger_s: float = 0.002, max_retry_delay_s: float = 10.0
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.max_retry_delay_s = max_retry_delay_s
        self._pending: list[tuple[AccessEntry, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, entry: AccessEntry) -> None:
        """Return once the entry is in its chain (or was already)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="access-chain")
        await done

    async def _write(self) -> None:
        # A moment for the other lanes' records of this poll to join the batch.
        await asyncio.sleep(self.linger_s)
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._store_until_done([entry for entry, _ in batch])
            for _, done in batch:
                if not done.done():  # its caller may have been cancelled (a stopping consumer)
                    done.set_result(None)

    async def _store_until_done(self, entries: list[AccessEntry]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await store_entries(self.sessions, entries)
                return
            except Exception as error:  # the database is down, or a replica appended to a chain first: again
                delay = random.uniform(0, min(self.max_retry_delay_s, 0.1 * 2 ** min(attempt, 8)))
                log.warning("storing access records failed (attempt %d): %s", attempt, scrub(repr(error)))
                await asyncio.sleep(delay)

    async def close(self) -> None:
        """Stop writing; what is not stored is uncommitted on desk.access and comes again."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


async def verify_chain(*, sessions: Sessions, subject: str) -> Verdict:
    """Check one citizen's whole chain as stored."""
    links: list[Link] = []
    while True:
        page = await chain_page(sessions, subject, after_seq=links[-1].seq if links else 0, limit=VERIFY_PAGE)
        links += page
        if len(page) < VERIFY_PAGE:
            return verify(links)


@dataclass(frozen=True)
class AccessPage:
    """One page of a citizen's accesses, newest first; `next_before` continues it (None: no more)."""

    accesses: list[AccessShown]
    next_before: int | None


async def who_looked(*, sessions: Sessions, subject: str, before: int | None = None, limit: int = 20) -> AccessPage:
    """Who read the citizen's data, newest first: role, organisation, purpose, time, resource; staff masked."""
    links = await newest_page(sessions, subject, before_seq=before, limit=limit + 1)
    more = len(links) > limit
    page = [shown(link) for link in links[:limit]]
    return AccessPage(page, page[-1].seq if more and page else None)
