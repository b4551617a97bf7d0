"""tracking's settings (prefix TRACKING_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.catalog import DEFAULT_CATALOG_DIR
from shared.settings import AuditSettings, DeploymentSettings, HttpEdgeSettings, KafkaSettings, RedisSettings

DEV_LOOKUP_KEY = "dev-only-lookup-key-change-me"
# notify's development default (NOTIFY_INTERNAL_KEY).
DEV_NOTIFY_KEY = "dev-only-internal-key-change-me"
# What intake presents on tracking's internal route; intake's development default (INTAKE_TRACKING_KEY) is the same.
DEV_INTERNAL_KEY = "dev-only-tracking-internal-key-change-me"


class TrackingSettings(BaseSettings):
    """Where the projection lives and how lookups are keyed."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8082
    group_id: str = "tracking"
    database_url: str = "sqlite+aiosqlite:///var/tracking.db"
    # The projection keeps an HMAC of the national ID, never the ID itself: enough to check a lookup.
    lookup_key: SecretStr = SecretStr(DEV_LOOKUP_KEY)
    outbox_poll_s: float = Field(default=0.5, gt=0)
    # Where a partition the projection has no offset for starts: "beginning" folds its whole history (a new
    # deployment, a lost database); "group" starts where the consumer group committed, for a projection that
    # only needs what comes next on a topic with history it does not care about (test suites, a staging
    # desk attached to a long-lived topic). Partitions with a stored offset always resume from it.
    new_projection_start: Literal["beginning", "group"] = "beginning"
    # Records folded per transaction at most (one fetch of the consumer).
    fold_batch: int = Field(default=500, ge=1, le=10_000)
    # Notification outcomes (desk.notifications) stored at once, each request's in order.
    notifications_concurrency: int = Field(default=16, ge=1, le=1024)
    # Access records (desk.access) in flight at once, each citizen's in order; those in flight together are
    # appended in one transaction, so this is also the largest batch.
    access_concurrency: int = Field(default=64, ge=1, le=1024)
    # The catalog gives each service's SLA (working days) and the inquiries a request waits for.
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    # How often the SLA watcher looks for requests past their due date.
    sla_check_s: float = Field(default=60.0, gt=0)
    # Lookup budgets (limits' syntax, several joined by ";"), per client address and per tracking code.
    lookup_limit_per_client: str = "30/minute;300/hour"
    lookup_limit_per_code: str = "10/minute;50/day"
    # Hot lookups stay in Redis this long at most (each change deletes its request's entry at once).
    # History login: notify texts the one-time code (it holds the mobiles); its internal route's key.
    notify_url: str = "http://127.0.0.1:8084"
    notify_key: SecretStr = SecretStr(DEV_NOTIFY_KEY)
    # What the other services (intake, checking a command) present on tracking's internal route.
    internal_key: SecretStr = SecretStr(DEV_INTERNAL_KEY)
    one_time_code_ttl_s: int = Field(default=300, ge=60, le=900)
    one_time_code_limit_per_client: str = "10/hour"
    one_time_code_limit_per_national_id: str = "3/10minutes;10/day"
    history_token_ttl_s: int = Field(default=900, ge=60, le=3600)
    lookup_cache_ttl_s: int = Field(default=30, ge=1, le=3600)
    # A live stream (SSE) ends after this long; the client reconnects. Without Redis it re-reads this often.
    stream_max_s: float = Field(default=1800.0, gt=0)
    stream_poll_s: float = Field(default=5.0, gt=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    http: HttpEdgeSettings = Field(default_factory=HttpEdgeSettings)
    # Lookups and the history are recorded on desk.access before they answer (shared/access_audit.py).
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> TrackingSettings:
        if self.deployment.deployment_environment not in {"local", "test"} and (
            self.lookup_key.get_secret_value() == DEV_LOOKUP_KEY
        ):
            raise ValueError("TRACKING_LOOKUP_KEY must be set to a secret outside local and test runs")
        if self.deployment.deployment_environment not in {"local", "test"} and (
            self.notify_key.get_secret_value() == DEV_NOTIFY_KEY
        ):
            raise ValueError("TRACKING_NOTIFY_KEY must be set to a secret outside local and test runs")
        if self.deployment.deployment_environment not in {"local", "test"} and (
            self.internal_key.get_secret_value() == DEV_INTERNAL_KEY
        ):
            raise ValueError("TRACKING_INTERNAL_KEY must be set to a secret outside local and test runs")
        self.audit.refuse_placeholder(self.deployment.deployment_environment)
        return self
