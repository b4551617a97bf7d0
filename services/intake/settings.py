"""intake's settings (prefix INTAKE_); shared infrastructure comes from shared.settings (prefix KHEDMAT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.catalog import DEFAULT_CATALOG_DIR
from shared.settings import DeploymentSettings, KafkaSettings, RedisSettings

DEV_TRACKING_CODE_KEY = "dev-only-tracking-code-key-change-me"


class IntakeSettings(BaseSettings):
    """How intake listens, numbers requests and finds its catalog."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8081
    # Each replica's unique part of the tracking code (0..63): the StatefulSet ordinal in Kubernetes.
    replica_id: int = Field(default=0, ge=0, le=63)
    # The keyed permutation that makes codes non-enumerable; shared by every replica, secret.
    tracking_code_key: SecretStr = SecretStr(DEV_TRACKING_CODE_KEY)
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    # How long a citizen waits for Kafka's acknowledgement before a 503; recorded in each submission.
    accept_window_s: float = Field(default=5.0, gt=0)
    accept_grace_s: float = Field(default=1.0, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> IntakeSettings:
        if self.deployment.deployment_environment not in {"local", "test"} and (
            self.tracking_code_key.get_secret_value() == DEV_TRACKING_CODE_KEY
        ):
            raise ValueError("INTAKE_TRACKING_CODE_KEY must be set to a secret outside local and test runs")
        return self
