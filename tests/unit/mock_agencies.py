"""Agencies scripted over httpx's MockTransport, for the tests of inquiry's agency clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Script:
    """A mock agency: answers the scripted responses in turn (the last one repeats) and records requests."""

    responses: list[Handler]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses[min(len(self.requests), len(self.responses)) - 1](request)


def raw(status: int, content: bytes) -> Handler:
    return lambda _request: httpx.Response(status, content=content)


def drop(_request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("agency too slow", request=request)
