"""A citizen's history of requests: every request of the signed-in citizen (identity's session, checked by
shared/sessions.py, names the national ID; tracking holds only its keyed digest)."""

from __future__ import annotations

from . import store
from .store import RequestRecord, Sessions


async def requests_of(sessions: Sessions, subject: str, limit: int = 100) -> list[RequestRecord]:
    """The applicant's requests, newest first."""
    return await store.requests_of(sessions=sessions, subject=subject, limit=limit)
