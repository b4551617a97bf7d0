"""Hot lookups from Redis, and the news that a request changed, for every tracking replica.

The cache holds a lookup's answer (no personal data: the request's status, timeline and the keyed digest of the
applicant's national ID, never the ID) under an HMAC of the tracking code, for a short TTL. The fold deletes a
request's entry after each commit that touched it, and publishes the change on the request's channel, which is
what a Server-Sent Events stream of that request waits on. Redis is a help, never a dependency: when it fails,
lookups read the database and streams poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter

from shared.rate_limits import REDIS_FAILURES
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CACHE_READS = Counter("khedmat_tracking_lookup_cache_total", "Lookup cache reads by result", ["result"])


class StatusCache:
    """Lookup answers by tracking code (keyed digest), invalidated on change; change notices per code."""

    def __init__(
        self, redis: aioredis.Redis | None, *, key: bytes, ttl_s: int = 30, prefix: str = "khedmat:tracking"
    ) -> None:
        if not key:
            raise ValueError("key must not be empty")
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._key = key

    def _digest(self, tracking_code: str) -> str:
        # The code is what a guesser needs: Redis (and its MONITOR, its dumps) never sees it in clear.
        return hmac.new(self._key, tracking_code.encode(), hashlib.sha256).hexdigest()[:32]

    def entry(self, tracking_code: str) -> str:
        return f"{self.prefix}:status:{self._digest(tracking_code)}"

    def channel(self, tracking_code: str) -> str:
        return f"{self.prefix}:changed:{self._digest(tracking_code)}"

    async def get(self, tracking_code: str) -> tuple[str, dict[str, Any]] | None:
        """(national ID digest, answer) when cached; None on a miss or when Redis fails."""
        if self.redis is None:
            return None
        try:
            raw = await self.redis.get(self.entry(tracking_code))
        except REDIS_FAILURES as error:
            CACHE_READS.labels("unavailable").inc()
            log.warning("lookup cache unavailable: %s", type(error).__name__)
            return None
        if raw is None:
            CACHE_READS.labels("miss").inc()
            return None
        CACHE_READS.labels("hit").inc()
        cached = json.loads(raw)
        return cached["digest"], cached["answer"]

    async def put(self, tracking_code: str, national_id_digest: str, answer: dict[str, Any]) -> None:
        """Remember an answer for `ttl_s` (best effort)."""
        if self.redis is None:
            return
        value = json.dumps({"digest": national_id_digest, "answer": answer}, ensure_ascii=False)
        try:
            await self.redis.set(self.entry(tracking_code), value, ex=self.ttl_s)
        except REDIS_FAILURES as error:
            log.warning("lookup cache not stored: %s", type(error).__name__)

    async def changed(self, tracking_codes: Iterable[str]) -> None:
        """After a commit: forget the requests' cached answers and tell their streams (best effort; TTL backs it)."""
        codes = sorted(set(tracking_codes))
        if self.redis is None or not codes:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(*(self.entry(code) for code in codes))
                for code in codes:
                    pipe.publish(self.channel(code), "1")
                await pipe.execute()
        except REDIS_FAILURES as error:
            log.warning("lookup cache not invalidated (expires in %ds): %s", self.ttl_s, type(error).__name__)

    async def clear(self) -> int:
        """Forget every cached answer (after a rebuild swapped its tables in); returns how many."""
        if self.redis is None:
            return 0
        removed = 0
        async for name in self.redis.scan_iter(match=f"{self.prefix}:status:*", count=1000):
            removed += int(await self.redis.delete(name))
        return removed


class ChangeFeed:
    """One Redis subscription per process, fanned out to the live streams waiting on particular requests.

    A stream waits for its request's notice or for `poll_s`, whichever comes first, so it still moves (later)
    while Redis is away.
    """

    def __init__(self, redis: aioredis.Redis | None, cache: StatusCache, *, poll_s: float = 5.0) -> None:
        self.redis = redis
        self.cache = cache
        self.poll_s = poll_s
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.redis is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="tracking-change-feed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _listen(self) -> None:
        assert self.redis is not None
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.psubscribe(f"{self.cache.prefix}:changed:*")
                    while True:
                        message = await pubsub.get_message(timeout=self.poll_s)
                        if message is not None:
                            channel = message["channel"]
                            name = channel.decode() if isinstance(channel, bytes) else str(channel)
                            for event in self._waiting.get(name, ()):
                                event.set()
            except REDIS_FAILURES as error:
                log.warning("change feed lost Redis, streams poll meanwhile: %s", type(error).__name__)
                await asyncio.sleep(self.poll_s)

    async def wait(self, tracking_code: str) -> None:
        """Until the request changes (a notice) or `poll_s` passes."""
        channel = self.cache.channel(tracking_code)
        event = asyncio.Event()
        self._waiting.setdefault(channel, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await event.wait()
        finally:
            waiting = self._waiting.get(channel)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[channel]
