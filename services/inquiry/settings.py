"""inquiry's settings (prefix INQUIRY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.catalog import DEFAULT_CATALOG_DIR
from shared.settings import AuditSettings, DevelopmentSecret, ServiceSettings


class InquirySettings(ServiceSettings):
    """Where the agencies are and how patiently inquiry asks them."""

    model_config = SettingsConfigDict(env_prefix="INQUIRY_")

    port: int = 8083
    group_id: str = "inquiry"
    # Requests verified at once per replica (each request's own events still one after another): with agencies
    # answering in 200 ms, 64 in flight is about 320 requests a second per replica.
    concurrency: int = Field(default=64, ge=1, le=1024)
    # Recorded verifications and submission inputs (personal data): inquiry's own database, no one else's.
    database_url: str = "sqlite+aiosqlite:///var/inquiry.db"
    # Base URL of the agencies' gateway; each agency has its own path prefix under it.
    agencies_base_url: str = "http://127.0.0.1:8090"
    # Per attempt. Agencies answering in 2 s must still pass; a hung one costs at most this per attempt.
    call_timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # An agency's breaker (per replica) opens when this many of its last `breaker_window` calls failed, and
    # stays open for `breaker_reset_s` before one trial call.
    breaker_failure_threshold: int = Field(default=25, ge=1)
    breaker_window: int = Field(default=50, ge=1)
    breaker_reset_s: float = Field(default=10.0, gt=0)
    # Calls per agency shared by every replica (Redis); an agency without an entry is not limited.
    agency_rate_limits: dict[str, str] = Field(
        default_factory=lambda: {
            agency: "100/second"
            for agency in ("civil-registry", "mobile-registry", "postal", "tax", "judiciary", "property-registry")
        }
    )
    rate_limit_max_wait_s: float = Field(default=2.0, ge=0)
    # Keys the answer cache's Redis keys (an HMAC of the inputs), so no national ID is ever a Redis key.
    cache_key: DevelopmentSecret = SecretStr("dev-only-inquiry-cache-key-change-me")
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    # A review request discloses the citizen's request to an agency: recorded on desk.access like any read.
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _breaker_threshold_fits_its_window(self) -> InquirySettings:
        if self.breaker_failure_threshold > self.breaker_window:
            raise ValueError("INQUIRY_BREAKER_FAILURE_THRESHOLD cannot exceed INQUIRY_BREAKER_WINDOW")
        return self
