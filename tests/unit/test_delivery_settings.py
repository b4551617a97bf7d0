"""Every service's broker is built with the safe settings: acks=all + idempotence, commit after success."""

from __future__ import annotations

from typing import Any

import pytest
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from services.inquiry.app import create_app as create_inquiry
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from services.tracking.app import create_app as create_tracking
from services.tracking.consumer import ProjectionConsumer
from shared.kafka import PRODUCER_ACKS, make_broker
from shared.keyed_consumer import KeyOrderedConsumer
from shared.settings import KafkaSettings

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
    assert captured["ack_policy"] is AckPolicy.NACK_ON_ERROR


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_subscriber_of_every_service_commits_only_after_success(service: str) -> None:
    app = FACTORIES[service]()
    broker: KafkaBroker = app.state.bus.broker
    for subscriber in broker.subscribers:
        assert subscriber.ack_policy is AckPolicy.NACK_ON_ERROR, subscriber
        assert subscriber._connection_args["enable_auto_commit"] is False  # type: ignore[attr-defined]
    consumers = app.state.bus.consumers
    for consumer in consumers:
        # Commits only offsets whose records are done, or keeps its offsets with its rows (tracking).
        assert isinstance(consumer, KeyOrderedConsumer | ProjectionConsumer)
    if service != "intake":
        assert broker.subscribers or consumers, f"{service} consumes something"
