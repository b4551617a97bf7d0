"""intake's settings (prefix INTAKE_); shared infrastructure comes from shared.settings (prefix KHEDMAT_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.catalog import DEFAULT_CATALOG_DIR
from shared.domain.tracking_code import MAX_REPLICA_ID
from shared.settings import DeploymentSettings, HttpEdgeSettings, KafkaSettings, RedisSettings

DEV_TRACKING_CODE_KEY = "dev-only-tracking-code-key-change-me"
DEV_RATE_LIMIT_KEY = "dev-only-rate-limit-key-change-me"
# tracking's development default (TRACKING_INTERNAL_KEY), so a local desk works out of the box.
DEV_TRACKING_KEY = "dev-only-tracking-internal-key-change-me"
# The development agency keys (their plaintext is in the file's first comment): refused outside local and test.
DEV_AGENCY_KEYS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "agency-keys.yaml"


def _rate_limit(value: str) -> str:
    """A limits string ("30/minute", or several joined by ';'), refused at start when it does not parse."""
    if not parse_many(value):
        raise ValueError(f"no rate limit in {value!r}")
    return value


RateLimitString = Annotated[str, AfterValidator(_rate_limit)]


class IntakeSettings(BaseSettings):
    """How intake listens, numbers requests and finds its catalog."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8081
    # Each replica's unique part of the tracking code (0..15): the StatefulSet ordinal in Kubernetes.
    replica_id: int = Field(default=0, ge=0, le=MAX_REPLICA_ID)
    # The keyed permutation that makes codes non-enumerable; shared by every replica, secret.
    tracking_code_key: SecretStr = SecretStr(DEV_TRACKING_CODE_KEY)
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    # How long a citizen waits for Kafka's acknowledgement before a 503; recorded in each submission.
    accept_window_s: float = Field(default=5.0, gt=0)
    accept_grace_s: float = Field(default=1.0, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # How long an Idempotency-Key remembers the tracking code it got (a citizen's retries come within a day).
    idempotency_ttl_s: int = Field(default=86400, ge=60)
    # Submissions allowed per client address and per national ID, counted in Redis across every replica.
    rate_limit_per_client: RateLimitString = "60/minute"
    rate_limit_per_national_id: RateLimitString = "10/hour"
    # Anonymous document uploads allowed per client address (each may be megabytes), counted the same way.
    rate_limit_uploads_per_client: RateLimitString = "30/minute"
    # Keys the HMAC that stands for a national ID in rate-limit keys (Redis holds no personal data); secret.
    rate_limit_key: SecretStr = SecretStr(DEV_RATE_LIMIT_KEY)
    # tracking's HTTP API: citizen commands prove ownership through its lookup (tracking code + national ID).
    tracking_url: str = "http://127.0.0.1:8082"
    # A citizen waits on this call; past it intake answers 503 rather than hang.
    tracking_timeout_s: float = Field(default=3.0, gt=0)
    # What intake presents on tracking's internal route (TRACKING_INTERNAL_KEY), to check an agency command.
    tracking_key: SecretStr = SecretStr(DEV_TRACKING_KEY)
    # tracking's projection can be a moment behind the bus: an agency command on a code it does not know yet, or
    # on a state it has not reached yet, is read again every `command_settle_poll_s` for up to this long before
    # it is answered 404 or 409 (0: answer on the first reading).
    command_settle_s: float = Field(default=1.5, ge=0, le=10)
    command_settle_poll_s: float = Field(default=0.25, gt=0)
    # sha256 of each agency's API key → the agency and the services it may act on (see adapters_agency_keys.py).
    agency_keys_file: Path = DEV_AGENCY_KEYS_FILE
    # Where uploaded documents are kept, content-addressed: files under blob_dir, or an S3-compatible bucket.
    blob_store: Literal["local", "s3"] = "local"
    blob_dir: Path = Path("var/blobs")
    s3_bucket: str | None = None
    # None means AWS itself; set it for MinIO, Ceph or another S3-compatible store.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Both or neither: without them botocore's credential chain (environment, web identity) is used.
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_prefix: str = "documents/"
    redis: RedisSettings = Field(default_factory=RedisSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    http: HttpEdgeSettings = Field(default_factory=HttpEdgeSettings)

    @model_validator(mode="after")
    def _blob_store_complete(self) -> IntakeSettings:
        if self.blob_store == "s3":
            if not self.s3_bucket or not self.s3_region:
                raise ValueError("INTAKE_BLOB_STORE=s3 needs INTAKE_S3_BUCKET and INTAKE_S3_REGION")
            if (self.s3_access_key is None) != (self.s3_secret_key is None):
                raise ValueError("set both INTAKE_S3_ACCESS_KEY and INTAKE_S3_SECRET_KEY, or neither")
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> IntakeSettings:
        if self.deployment.deployment_environment not in {"local", "test"}:
            if self.tracking_code_key.get_secret_value() == DEV_TRACKING_CODE_KEY:
                raise ValueError("INTAKE_TRACKING_CODE_KEY must be set to a secret outside local and test runs")
            if self.rate_limit_key.get_secret_value() == DEV_RATE_LIMIT_KEY:
                raise ValueError("INTAKE_RATE_LIMIT_KEY must be set to a secret outside local and test runs")
            if self.tracking_key.get_secret_value() == DEV_TRACKING_KEY:
                raise ValueError("INTAKE_TRACKING_KEY must be set to a secret outside local and test runs")
            if self.agency_keys_file.resolve() == DEV_AGENCY_KEYS_FILE:
                raise ValueError("INTAKE_AGENCY_KEYS_FILE must name the real agency keys outside local and test runs")
        return self
