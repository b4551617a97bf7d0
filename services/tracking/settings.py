"""tracking's settings (prefix TRACKING_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalog import DEFAULT_CATALOG_DIR
from shared.settings import AuditSettings, DevelopmentSecret, ServiceSettings, SessionSettings


class TrackingSettings(ServiceSettings):
    """Where the projection lives and how lookups are keyed."""

    # populate_by_name: the aliased setting below is still given by its name in code.
    model_config = SettingsConfigDict(env_prefix="TRACKING_", populate_by_name=True)

    port: int = 8082
    group_id: str = "tracking"
    database_url: str = "sqlite+aiosqlite:///var/tracking.db"
    # The projection keeps an HMAC of the national ID, never the ID itself: enough to check a lookup.
    lookup_key: DevelopmentSecret = SecretStr("dev-only-lookup-key-change-me")
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
    # Lookup budgets (limits' syntax, several joined by ";"; adapters_throttle.py): every lookup per client
    # address; per tracking code, the lookups that found nothing (once full, the code's anonymous lookups answer
    # 429) and, apart, the anonymous ones that found the request (a scraping bound failures cannot fill). The
    # applicant's own session skips the code's windows. TRACKING_LOOKUP_LIMIT_PER_CODE, which counted every
    # lookup of a code, is read as the failures' budget when TRACKING_LOOKUP_FAILURES_PER_CODE is not set.
    lookup_limit_per_client: str = "30/minute;300/hour"
    lookup_failures_per_code: str = Field(
        default="10/minute;50/day",
        validation_alias=AliasChoices("TRACKING_LOOKUP_FAILURES_PER_CODE", "TRACKING_LOOKUP_LIMIT_PER_CODE"),
    )
    lookup_successes_per_code: str = "60/minute;1000/day"
    # What the other services (intake, checking a command) present on tracking's internal route; intake's
    # development default (INTAKE_TRACKING_KEY) is the same.
    internal_key: DevelopmentSecret = SecretStr("dev-only-tracking-internal-key-change-me")
    # Hot lookups stay in Redis this long at most (each change deletes its request's entry at once).
    lookup_cache_ttl_s: int = Field(default=30, ge=1, le=3600)
    # A live stream (SSE) ends after this long; the client reconnects. Without Redis it re-reads this often.
    stream_max_s: float = Field(default=1800.0, gt=0)
    stream_poll_s: float = Field(default=5.0, gt=0)
    # Where identity publishes the keys of citizens' access tokens (the history takes a session).
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    # Lookups and the history are recorded on desk.access before they answer (shared/access_audit.py).
    audit: AuditSettings = Field(default_factory=AuditSettings)
