"""Run-time fault injection and call counting for the simulated government agencies."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import httpx
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

AGENCIES: tuple[str, ...] = (
    "civil-registry",
    "mobile-registry",
    "postal",
    "tax",
    "judiciary",
    "property-registry",
)

DEFAULT_TIMEOUT_S = 30.0


class FaultConfig(BaseModel):
    """How one agency misbehaves; the all-defaults value means healthy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: int = Field(default=0, ge=0, le=600_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False


class FaultOutcome(enum.StrEnum):
    """What the fault layer does with one call."""

    ANSWER = "answer"
    DOWN = "down"
    ERROR = "error"
    TIMEOUT = "timeout"
    DROP = "drop"


@dataclass(frozen=True)
class FaultDecision:
    """The fault layer's verdict on one call: how long to stall first, then what to do."""

    latency_s: float
    outcome: FaultOutcome


@dataclass
class AgencyStats:
    """Counters for the calls one agency received; every call counts once in `calls`."""

    calls: int = 0
    down: int = 0
    errors: int = 0
    timeouts: int = 0
    drops: int = 0


_OUTCOME_COUNTER: dict[FaultOutcome, str] = {
    FaultOutcome.DOWN: "down",
    FaultOutcome.ERROR: "errors",
    FaultOutcome.TIMEOUT: "timeouts",
    FaultOutcome.DROP: "drops",
}


class UnknownAgencyError(KeyError):
    """Raised for an agency name the registry does not simulate."""


class FaultRegistry:
    """Fault settings, seeded dice and call counters for each simulated agency."""

    def __init__(
        self,
        *,
        seed: int = 0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        agencies: Iterable[str] = AGENCIES,
    ) -> None:
        self.seed = seed
        self.timeout_s = timeout_s
        self.agencies: tuple[str, ...] = tuple(agencies)
        self._faults: dict[str, FaultConfig] = {}
        self._stats: dict[str, AgencyStats] = {}
        self._dice: dict[str, random.Random] = {}
        self.reset()
        self.reset_stats()

    def _check(self, agency: str) -> None:
        if agency not in self.agencies:
            raise UnknownAgencyError(agency)

    def get(self, agency: str) -> FaultConfig:
        """The faults currently set for an agency."""
        self._check(agency)
        return self._faults[agency]

    def set(self, agency: str, config: FaultConfig) -> None:
        """Replace an agency's faults."""
        self._check(agency)
        self._faults[agency] = config

    def all(self) -> dict[str, FaultConfig]:
        """The faults of every agency, healthy ones included."""
        return dict(self._faults)

    def reset(self) -> None:
        """Make every agency healthy again and restart the dice, so a reset run repeats exactly."""
        self._faults = {agency: FaultConfig() for agency in self.agencies}
        # One stream per agency, so the calls one agency gets do not shift another agency's dice.
        self._dice = {agency: random.Random(f"{self.seed}:{agency}") for agency in self.agencies}

    def stats(self) -> dict[str, AgencyStats]:
        """A snapshot of the call counters of every agency."""
        return {agency: AgencyStats(**asdict(stats)) for agency, stats in self._stats.items()}

    def reset_stats(self) -> None:
        """Zero every call counter."""
        self._stats = {agency: AgencyStats() for agency in self.agencies}

    def decide(self, agency: str) -> FaultDecision:
        """Count a call to an agency and decide which fault, if any, it suffers."""
        self._check(agency)
        config = self._faults[agency]
        dice = self._dice[agency]
        # Always roll all three, so the stream position depends only on how many calls came before.
        drop_roll, error_roll, timeout_roll = dice.random(), dice.random(), dice.random()
        if config.down:
            outcome = FaultOutcome.DOWN
        elif drop_roll < config.drop_rate:
            outcome = FaultOutcome.DROP
        elif error_roll < config.error_rate:
            outcome = FaultOutcome.ERROR
        elif timeout_roll < config.timeout_rate:
            outcome = FaultOutcome.TIMEOUT
        else:
            outcome = FaultOutcome.ANSWER
        stats = self._stats[agency]
        stats.calls += 1
        counter = _OUTCOME_COUNTER.get(outcome)
        if counter is not None:
            setattr(stats, counter, getattr(stats, counter) + 1)
        return FaultDecision(latency_s=config.latency_ms / 1000, outcome=outcome)


class SimulatedConnectionDrop(httpx.RemoteProtocolError):
    """Raised by the fault layer to drop a connection; in-process httpx clients see it as it is."""


class _HideSimulatedDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberately dropped connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedConnectionDrop))


_HIDE_SIMULATED_DROPS = _HideSimulatedDrops()


def hide_simulated_drops_in_uvicorn_log() -> None:
    """Install the log filter that silences tracebacks of simulated drops (safe to call repeatedly)."""
    logging.getLogger("uvicorn.error").addFilter(_HIDE_SIMULATED_DROPS)


class FaultInjectionMiddleware:
    """ASGI middleware that applies a FaultRegistry to requests whose first path segment names an agency.

    A dropped call is simulated by sending the status line and headers announcing a body, then raising
    SimulatedConnectionDrop: uvicorn closes the socket when an app fails after its response started, so
    a real httpx client gets RemoteProtocolError ("peer closed connection without sending complete
    message body"), and an in-process httpx.ASGITransport client gets the exception itself, which is a
    RemoteProtocolError too. No ASGI server lets an app close a socket before any byte is written.
    """

    def __init__(self, app: ASGIApp, registry: FaultRegistry) -> None:
        self.app = app
        self.registry = registry

    def _agency_called(self, scope: Scope) -> str | None:
        """The simulated agency an HTTP call goes to (its first path segment); None for any other call."""
        if scope["type"] != "http":
            return None
        agency: str = scope["path"].split("/")[1]
        return agency if agency in self.registry.agencies else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        agency = self._agency_called(scope)
        if agency is None:  # lifespan, /control, /healthz: never faulted
            await self.app(scope, receive, send)
            return
        decision = self.registry.decide(agency)
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.outcome in (FaultOutcome.DOWN, FaultOutcome.ERROR):
            response = JSONResponse({"error": "service_unavailable"}, status_code=503)
            await response(scope, receive, send)
            return
        if decision.outcome is FaultOutcome.DROP:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
                }
            )
            raise SimulatedConnectionDrop(f"sandbox fault injection dropped a call to {agency}")
        if decision.outcome is FaultOutcome.TIMEOUT:
            await asyncio.sleep(self.registry.timeout_s)
        await self.app(scope, receive, send)
