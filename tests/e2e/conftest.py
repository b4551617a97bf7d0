"""The desk running as processes, shared by the e2e tests of one module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import Stack
from testkit.infra import Servers


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """sandbox + intake + inquiry + tracking + notify as separate processes on real Kafka and Redis."""
    with Stack(servers, Path(tmp_path_factory.mktemp("stack"))).running() as running:
        yield running
