"""SMS failover: the second gateway carries what the first cannot, traffic sticks to the gateway that works,
and the first is tried again after a while; when every gateway fails, the error says whether to retry."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.notify.adapters import FailoverSmsGateway, SmsSendError


@dataclass
class Gateway:
    name: str
    failing: SmsSendError | None = None
    sent: list[str] = field(default_factory=list)
    tried: int = 0

    async def send(self, *, receptor: str, message: str, local_id: str) -> str:
        self.tried += 1
        if self.failing is not None:
            raise self.failing
        self.sent.append(local_id)
        return f"{self.name}-{local_id}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def send(gateway: FailoverSmsGateway, local_id: str) -> str:
    return await gateway.send(receptor="09121234567", message="سلام", local_id=local_id)


async def test_the_second_gateway_carries_what_the_first_cannot_and_keeps_the_traffic() -> None:
    primary, fallback = Gateway("p", failing=SmsSendError("503", retryable=True)), Gateway("f")
    clock = Clock()
    failover = FailoverSmsGateway([primary, fallback], retry_primary_s=60, clock=clock)
    assert await send(failover, "1") == "f-1"
    assert await send(failover, "2") == "f-2"
    assert primary.tried == 1  # the dead primary cost one call, not one per message

    primary.failing = None
    clock.now = 61  # after a while the primary is asked first again
    assert await send(failover, "3") == "p-3"
    assert fallback.sent == ["1", "2"] and primary.sent == ["3"]


async def test_every_gateway_failing_is_retryable_if_any_failure_was() -> None:
    permanent = SmsSendError("401 invalid key", retryable=False)
    failover = FailoverSmsGateway(
        [Gateway("p", failing=permanent), Gateway("f", failing=SmsSendError("x", retryable=True))]
    )
    with pytest.raises(SmsSendError) as raised:
        await send(failover, "1")
    assert raised.value.retryable
    both_permanent = FailoverSmsGateway([Gateway("p", failing=permanent), Gateway("f", failing=permanent)])
    with pytest.raises(SmsSendError) as raised:
        await send(both_permanent, "1")
    assert not raised.value.retryable


def test_no_gateway_is_refused() -> None:
    with pytest.raises(ValueError):
        FailoverSmsGateway([])


def test_notify_fails_over_only_when_a_second_gateway_is_configured() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from services.notify.app import create_app
    from services.notify.settings import NotifySettings

    single = create_app(NotifySettings(), tracer_provider=TracerProvider()).state.notify.sms
    assert isinstance(single, FailoverSmsGateway) and len(single.gateways) == 1
    settings = NotifySettings(sms_fallback_base_url="http://127.0.0.1:9191")
    both = create_app(settings, tracer_provider=TracerProvider()).state.notify.sms
    assert isinstance(both, FailoverSmsGateway) and both.names == ["primary", "fallback"]
