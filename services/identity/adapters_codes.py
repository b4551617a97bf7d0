"""Sign-in codes in Redis (every replica must see them), following the pure rules of domain.py.

One hash per citizen (keyed by the subject's digest): the code's keyed digest bound to the mobile, when it was
texted and the wrong tries so far; never the code. Each change reads the hash, asks the pure rule, and writes
under WATCH, so two requests at once cannot both redeem one code or both send one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from .domain import CodePolicy, PendingCode, Redemption, code_digest, may_send, redeem

CODES_PREFIX = "khedmat:identity:code"
# A citizen's own two devices racing is the worst case; past this many collisions the request is refused.
MAX_WATCH_RETRIES = 5


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CodesContended(Exception):
    """Too many concurrent changes to one citizen's code: nothing was changed."""


def _pending(raw: Mapping[bytes | str, bytes | str]) -> PendingCode | None:
    fields = {_text(name): _text(value) for name, value in raw.items()}
    if not fields:
        return None
    try:
        return PendingCode(digest=fields["digest"], sent_at=float(fields["sent_at"]), tries=int(fields["tries"]))
    except (KeyError, ValueError):
        return None  # a hash this code did not write is no code


class SignInCodes:
    """Issues, withdraws and redeems the one pending sign-in code of each citizen."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        key: bytes,
        policy: CodePolicy,
        prefix: str = CODES_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.policy = policy
        self.prefix = prefix
        self.clock = clock
        self._key = key

    def _name(self, subject: str) -> str:
        return f"{self.prefix}:{subject}"

    def _new_code(self) -> str:
        return f"{secrets.randbelow(10**self.policy.digits):0{self.policy.digits}d}"

    async def issue(self, *, subject: str, mobile: str) -> str | None:
        """A fresh code bound to `mobile`, replacing any earlier one; None while the cool-down holds."""
        name = self._name(subject)
        for _ in range(MAX_WATCH_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(name)
                    now = self.clock()
                    if not may_send(_pending(await pipe.hgetall(name)), now=now, policy=self.policy):
                        return None
                    code = self._new_code()
                    digest = code_digest(self._key, subject=subject, mobile=mobile, code=code)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(name)
                    pipe.hset(name, mapping={"digest": digest, "sent_at": repr(now), "tries": 0})
                    pipe.expire(name, self.policy.ttl_s)
                    await pipe.execute()
                    return code
                except WatchError:
                    continue
        raise CodesContended()

    async def withdraw(self, *, subject: str) -> None:
        """Forget the code (it could not be texted), so nothing stays stored and no cool-down holds."""
        await self.redis.delete(self._name(subject))

    async def redeem(self, *, subject: str, mobile: str, code: str) -> bool:
        """True once for the right code texted to `mobile`; a wrong one spends a try (the last burns the code)."""
        name = self._name(subject)
        presented = code_digest(self._key, subject=subject, mobile=mobile, code=code)
        for _ in range(MAX_WATCH_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(name)
                    result = redeem(_pending(await pipe.hgetall(name)), presented, now=self.clock(), policy=self.policy)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if result.after is None:
                        pipe.delete(name)
                    else:
                        pipe.hset(name, "tries", result.after.tries)
                    await pipe.execute()
                    return result.outcome is Redemption.ACCEPTED
                except WatchError:
                    continue
        raise CodesContended()
