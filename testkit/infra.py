"""The one place that decides where the test servers come from.

When a Docker engine answers (a developer laptop), Kafka, Redis and PostgreSQL run in throwaway containers
through testcontainers. Where none does (this CI machine), the project's own scripts under deploy/local/ start
real Apache Kafka (KRaft, jars from Maven Central), Debian's Redis and Debian's PostgreSQL on 127.0.0.1.
Nothing is ever faked.
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


@dataclass(frozen=True)
class Servers:
    """Addresses of the servers a test may talk to."""

    kafka_bootstrap: str
    redis_url: str
    postgres_url: str  # SQLAlchemy async URL of a database the tests may use to create their own databases
    origin: str


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (not just a docker client on the PATH)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


# The tests' own Kafka, Redis and PostgreSQL: other ports and another state folder than `make run`'s, so a test
# session never touches a developer's running desk, and it starts from empty topics, groups, keys and databases.
# KHEDMAT_TEST_PORT_OFFSET moves all four ports, so two checkouts (git worktrees) can run their suites at once.
_PORT_OFFSET = int(os.environ.get("KHEDMAT_TEST_PORT_OFFSET", "0"))
TEST_SERVER_ENV = {
    "KHEDMAT_LOCAL_STATE": str(REPO_ROOT / ".cache" / "test-servers"),
    "KHEDMAT_KAFKA_PORT": str(19092 + _PORT_OFFSET),
    "KHEDMAT_KAFKA_CONTROLLER_PORT": str(19093 + _PORT_OFFSET),
    "KHEDMAT_REDIS_PORT": str(16380 + _PORT_OFFSET),
    "KHEDMAT_POSTGRES_PORT": str(15432 + _PORT_OFFSET),
}
LOCAL_SCRIPTS = REPO_ROOT / "deploy" / "local"


def _local(script: str, *args: str) -> None:
    subprocess.run(
        ["bash", str(LOCAL_SCRIPTS / script), *args], check=True, cwd=REPO_ROOT, env={**os.environ, **TEST_SERVER_ENV}
    )


def _local_servers() -> Servers:
    # Stop them if running and wipe their data: every session starts from nothing.
    _local("kafka.sh", "reset")
    _local("postgres.sh", "reset")
    _local("up.sh")
    redis_url = f"redis://127.0.0.1:{TEST_SERVER_ENV['KHEDMAT_REDIS_PORT']}/0"
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return Servers(
        kafka_bootstrap=f"127.0.0.1:{TEST_SERVER_ENV['KHEDMAT_KAFKA_PORT']}",
        redis_url=redis_url,
        postgres_url=f"postgresql+asyncpg://khedmat@127.0.0.1:{TEST_SERVER_ENV['KHEDMAT_POSTGRES_PORT']}/khedmat",
        origin="local",
    )


def stop_test_servers() -> None:
    """Stop the tests' own Kafka, Redis and PostgreSQL (CI calls this after the run)."""
    _local("down.sh")


@contextlib.contextmanager
def _container_servers() -> Iterator[Servers]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        RedisContainer("redis:7") as redis,
        PostgresContainer(
            "postgres:15", username="khedmat", password="khedmat", dbname="khedmat", driver="asyncpg"
        ).with_command("postgres -c max_connections=200") as postgres,
    ):
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Servers(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            redis_url=f"redis://{host}:{port}/0",
            postgres_url=postgres.get_connection_url(),
            origin="docker",
        )


@contextlib.contextmanager
def test_servers() -> Iterator[Servers]:
    """Kafka, Redis and PostgreSQL for one test session, from containers or from the local scripts."""
    choice = os.environ.get("KHEDMAT_TEST_SERVERS", "auto")
    if choice == "docker" or (choice == "auto" and docker_engine_answers()):
        with _container_servers() as servers:
            yield servers
    else:
        yield _local_servers()


def stop_local_kafka() -> None:
    """Stop the tests' Kafka broker (chaos tests; local servers only)."""
    _local("kafka.sh", "stop")


def start_local_kafka() -> None:
    """Start the tests' Kafka broker again with its data intact."""
    _local("kafka.sh", "start")


if __name__ == "__main__":
    stop_test_servers()
