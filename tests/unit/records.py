"""Fake Kafka records, as the consumers hand them to a service's record handlers (`shared.keyed_consumer.Record`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import LOG_APPEND_TIME_TYPE, AnyEvent
from shared.keyed_consumer import Record


def record_of(
    topic: str,
    event: AnyEvent | dict[str, Any] | bytes | None,
    *,
    offset: int = 0,
    partition: int = 0,
    timestamp_ms: int | None = None,
    key: bytes | None = None,
) -> Record:
    """A record of `topic` carrying `event` as intake's producer writes it (CloudEvents headers, keyed by its
    tracking code), appended by the broker at `timestamp_ms` (LogAppendTime; now unless given)."""
    headers: list[tuple[str, bytes]] = []
    if isinstance(event, dict):
        value: bytes | None = json.dumps(event).encode()
    elif isinstance(event, bytes) or event is None:
        value = event
    else:
        value = event_value(event)
        key = key or event_key(event)
        headers = [(name, text.encode()) for name, text in cloudevent_headers(event, source="/test").items()]
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(datetime.now(UTC).timestamp() * 1000) if timestamp_ms is None else timestamp_ms,
        timestamp_type=LOG_APPEND_TIME_TYPE,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers,
    )
