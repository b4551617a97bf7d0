"""tracking's bus edges: its dependencies, and its subscription and publication as AsyncAPI declarations."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.kafka import KafkaRouter

from shared.events import RequestEvent, SlaBreached, StatusChanged
from shared.kafka import make_router
from shared.topics import Topic

from .cache import ChangeFeed, StatusCache
from .history import HistoryTokens, NotifyCodeSender, OneTimeCodes
from .service import Sessions
from .throttle import LookupThrottle

SUBSCRIPTION_DESCRIPTION = (
    "Folds every request event into the status projection, a fetched batch per transaction; offsets are stored "
    "with the rows, and each assigned partition resumes from them."
)


@dataclass
class Tracking:
    """tracking's dependencies."""

    sessions: Sessions
    lookup_key: bytes
    throttle: LookupThrottle
    cache: StatusCache
    changes: ChangeFeed
    tokens: HistoryTokens
    code_throttle: LookupThrottle
    codes: OneTimeCodes
    code_sender: NotifyCodeSender
    stream_max_s: float = 1800.0


def documentation_router(*, group_id: str) -> KafkaRouter:
    """tracking's subscription and publications as faststream declarations, for the AsyncAPI document only."""
    router = make_router()
    router.publisher(Topic.STATUS, title="desk.status:StatusChanged", schema=StatusChanged)
    router.publisher(
        Topic.REQUESTS,
        title="desk.requests:SlaBreached",
        description="The SLA watcher's one event per request past its due date (id derived from code and date).",
        schema=SlaBreached,
    )

    @router.subscriber(
        Topic.REQUESTS, group_id=group_id, title="desk.requests:tracking", description=SUBSCRIPTION_DESCRIPTION
    )
    async def on_request_event(body: RequestEvent) -> None:
        raise NotImplementedError("documentation only: records are folded by ProjectionConsumer")

    return router
