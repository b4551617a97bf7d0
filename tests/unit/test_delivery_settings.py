"""Every service's broker publishes with the safe settings (acks=all + idempotence) and consumes nothing; its
consumers commit only what is done."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from services.inquiry.app import create_app as create_inquiry
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from services.tracking.app import create_app as create_tracking
from services.tracking.consumers import ProjectionConsumer
from shared.kafka import PRODUCER_ACKS, make_broker, make_consumer
from shared.keyed_consumer import KeyOrderedConsumer
from shared.settings import KafkaSettings
from shared.subscriptions import Kind

FACTORIES: dict[str, Any] = {
    "intake": create_intake,
    "inquiry": create_inquiry,
    "tracking": create_tracking,
    "notify": create_notify,
}


def test_the_broker_factory_asks_for_acks_all_and_idempotence(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    original = KafkaBroker.__init__

    def spy(self: KafkaBroker, *args: Any, **kwargs: Any) -> None:
        captured.update(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(KafkaBroker, "__init__", spy)
    make_broker(kafka=KafkaSettings(), client_id="t")
    assert PRODUCER_ACKS == "all"
    assert captured["acks"] == "all"
    assert captured["enable_idempotence"] is True


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_consumer_of_every_service_commits_only_what_is_done(service: str) -> None:
    app = FACTORIES[service]()
    broker: KafkaBroker = app.state.bus.broker
    assert not broker.subscribers, "records are consumed by the declared consumers, not faststream subscribers"
    consumers = app.state.bus.consumers
    kinds = {KeyOrderedConsumer: Kind.KEY_ORDERED, ProjectionConsumer: Kind.PROJECTION}
    declared = getattr(app.state, "subscriptions", [])
    assert len(consumers) == len(declared)
    for consumer, subscription in zip(consumers, declared, strict=True):
        # Commits only offsets whose records are done, or keeps its offsets with its rows (tracking).
        assert kinds[type(consumer)] is subscription.kind
        assert consumer._consumer is None  # built, not started: make_consumer turns auto-commit off
    if service != "intake":
        assert consumers, f"{service} consumes something"


async def test_the_services_own_consumers_never_auto_commit() -> None:
    consumer = make_consumer(KafkaSettings(), group_id="g", client_id="t")
    try:
        assert consumer._enable_auto_commit is False
    finally:
        await consumer.stop()
