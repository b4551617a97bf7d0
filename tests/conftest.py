"""Fixtures shared by every suite; the ones that start servers live here and in tests/harness.py only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.settings import KafkaSettings
from tests.infra import Servers, test_servers


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """Real Kafka and Redis for the whole session (containers or local servers; see tests/infra.py)."""
    with test_servers() as found:
        yield found


@pytest.fixture(scope="session")
def kafka_settings(servers: Servers) -> KafkaSettings:
    """Kafka settings pointing at the session's broker."""
    return KafkaSettings(bootstrap_servers=servers.kafka_bootstrap)
