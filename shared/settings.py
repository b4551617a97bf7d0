"""Settings every service shares: Kafka, Redis, the database and telemetry (pydantic-settings).

Shared infrastructure is read under the `KHEDMAT_` prefix so an operator sets it once; each service's own
settings class lives in its package under its own prefix (`INTAKE_`, `INQUIRY_`, `TRACKING_`, `NOTIFY_`,
`IDENTITY_`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where a development default of a secret is allowed: anywhere else it would be a publicly known key.
DEVELOPMENT_ENVIRONMENTS = frozenset({"local", "test"})
_DEVELOPMENT_DEFAULT = "development default"
DevelopmentSecret = Annotated[SecretStr, _DEVELOPMENT_DEFAULT]
"""A secret whose default is for local and test runs only: `ServiceSettings` refuses it anywhere else."""


class KafkaSettings(BaseSettings):
    """Where the bus is and how hard producers wait for it."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    # A citizen waits on intake's publish: a bounded wait turns a dead bus into a prompt 503, and a batch that
    # expires in the producer is never sent afterwards, so a 503 never hides a late write.
    request_timeout_ms: int = Field(default=5000, ge=1000)
    # Local and test runs create their topics; in production Strimzi's KafkaTopic resources own them.
    create_topics: bool = True
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class RedisSettings(BaseSettings):
    """Where Redis is; it only ever holds what may be lost."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_REDIS_", extra="ignore")

    url: str = "redis://127.0.0.1:6380/0"


class DeploymentSettings(BaseSettings):
    """Names that end up in telemetry resource attributes and CloudEvents sources."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_", extra="ignore")

    deployment_environment: str = "local"
    service_version: str = "0.1.0"


class HttpEdgeSettings(BaseSettings):
    """What every service's HTTP edge allows: other sites' pages (CORS) and how large a request body may be."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_HTTP_", extra="ignore")

    # Origins whose pages may call the API from a browser (e.g. a future portal), as a JSON list:
    # KHEDMAT_HTTP_CORS_ALLOWED_ORIGINS='["https://portal.example.ir"]'. Empty: no cross-origin calls at all.
    cors_allowed_origins: list[str] = Field(default_factory=list)
    # Largest request body a route accepts unless it has its own limit (uploads do); larger ones get 413.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)


class ServiceSettings(BaseSettings):
    """What every service's settings class (under its own prefix) holds besides its own settings: the shared
    infrastructure, and the refusal of a development secret outside local and test runs."""

    # A subclass names its prefix; what the environment holds for other services is none of its business.
    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    http: HttpEdgeSettings = Field(default_factory=HttpEdgeSettings)

    @model_validator(mode="after")
    def _no_development_secrets(self) -> Self:
        if self.deployment.deployment_environment in DEVELOPMENT_ENVIRONMENTS:
            return self
        for variable in _development_defaults(self):
            raise ValueError(f"{variable} must be set to a secret outside local and test runs")
        return self


def _development_defaults(settings: BaseSettings) -> Iterator[str]:
    """The variables of `settings` (and of the settings it holds, e.g. KHEDMAT_AUDIT_*) still at their
    development default, in declaration order."""
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if _DEVELOPMENT_DEFAULT in field.metadata and value == field.default:
            yield f"{settings.model_config.get('env_prefix', '')}{name}".upper()
        elif isinstance(value, BaseSettings):
            yield from _development_defaults(value)


class SessionSettings(BaseSettings):
    """How every service checks a citizen's session: where identity publishes its public keys (shared/sessions.py)."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_IDENTITY_", extra="ignore")

    jwks_url: str = "http://127.0.0.1:8085/.well-known/jwks.json"
    # Keys are fetched again this often, so a key identity stopped publishing (the end of a rotation) stops
    # verifying everywhere within this long; an unknown kid fetches sooner (at most once per 30 s).
    jwks_max_age_s: float = Field(default=300.0, ge=5.0)
    jwks_timeout_s: float = Field(default=2.0, gt=0)
    # Clock skew allowed between identity and the verifying service, on exp and iat.
    leeway_s: int = Field(default=10, ge=0, le=60)


# The audit subject key's development default (tests and local runs build records with it).
DEV_AUDIT_SUBJECT_KEY = "dev-only-audit-subject-key-change-me"


class AuditSettings(BaseSettings):
    """How accesses to personal data are recorded (shared/access_audit.py): one key and one bound for the desk."""

    model_config = SettingsConfigDict(env_prefix="KHEDMAT_AUDIT_", extra="ignore")

    # KHEDMAT_AUDIT_SUBJECT_KEY: the HMAC key of the subject digest. Every service recording an access uses it, so
    # one citizen is one subject (one chain) whoever read their data; it is not the key of any service's store.
    subject_key: DevelopmentSecret = SecretStr(DEV_AUDIT_SUBJECT_KEY)
    # KHEDMAT_AUDIT_TIMEOUT_S: how long a read waits for Kafka to acknowledge its access record; past it the read
    # is refused (503). The bound a citizen may wait on top of the read itself.
    timeout_s: float = Field(default=2.0, gt=0, le=30)
