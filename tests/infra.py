"""The one place that decides where the test servers come from.

When a Docker engine answers (a developer laptop), Kafka and Redis run in throwaway containers through
testcontainers. Where none does (this CI machine), the project's own scripts under deploy/local/ start real
Apache Kafka (KRaft, jars from Maven Central) and Debian's Redis on 127.0.0.1. Nothing is ever faked.
Set KHEDMAT_TEST_SERVERS=local or =docker to force one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_UP = REPO_ROOT / "deploy" / "local" / "up.sh"


@dataclass(frozen=True)
class Servers:
    """Addresses of the servers a test may talk to."""

    kafka_bootstrap: str
    redis_url: str
    origin: str


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (not just a docker client on the PATH)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


def _local_servers() -> Servers:
    subprocess.run(["bash", str(LOCAL_UP)], check=True, cwd=REPO_ROOT)
    kafka_port = os.environ.get("KHEDMAT_KAFKA_PORT", "9092")
    redis_port = os.environ.get("KHEDMAT_REDIS_PORT", "6380")
    return Servers(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", "local")


@contextlib.contextmanager
def _container_servers() -> Iterator[Servers]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, RedisContainer("redis:7") as redis:
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Servers(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "docker")


@contextlib.contextmanager
def test_servers() -> Iterator[Servers]:
    """Kafka and Redis for one test session, from containers or from the local scripts."""
    choice = os.environ.get("KHEDMAT_TEST_SERVERS", "auto")
    if choice == "docker" or (choice == "auto" and docker_engine_answers()):
        with _container_servers() as servers:
            yield servers
    else:
        yield _local_servers()


def stop_local_kafka() -> None:
    """Stop the local Kafka broker (chaos tests; local servers only)."""
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "local" / "kafka.sh"), "stop"], check=True, cwd=REPO_ROOT)


def start_local_kafka() -> None:
    """Start the local Kafka broker again with its data intact."""
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "local" / "kafka.sh"), "start"], check=True, cwd=REPO_ROOT)
