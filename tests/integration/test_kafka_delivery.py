"""The broker factory's delivery guarantees, shown on the real Kafka broker.

The broker only publishes; consuming (commit after the work, retries, dead letters) is the services' own
consumers', shown in test_keyed_consumer.py and the tracking tests.
"""

from __future__ import annotations

from shared.kafka import make_broker
from shared.settings import KafkaSettings


async def test_every_producer_waits_for_all_replicas_and_is_idempotent(kafka_settings: KafkaSettings) -> None:
    broker = make_broker(kafka=kafka_settings, client_id="test-settings")
    await broker.start()
    try:
        producer = broker.config.broker_config.producer._producer.producer  # type: ignore[attr-defined]
        assert producer._sender._acks == -1  # acks=all
        assert producer._txn_manager is not None  # idempotence on
    finally:
        await broker.stop()
