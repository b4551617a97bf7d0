"""Where the sandbox servers listen and how they behave, read from SANDBOX_* environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sandbox.faults import DEFAULT_TIMEOUT_S
from sandbox.sms_gateway import DEFAULT_API_KEY

Port = Annotated[int, Field(ge=0, le=65535)]


class SandboxSettings(BaseSettings):
    """Settings for `python -m sandbox`; a port of 0 picks a free one."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore")

    host: str = "127.0.0.1"
    agencies_port: Port = 8090
    sms_port: Port = 8091
    smtp_port: Port = 2525
    smtp_http_port: Port = 8092
    sms_receipt_url: str | None = None
    # Comma-separated in the environment, e.g. SANDBOX_SMS_API_KEYS=key-one,key-two.
    sms_api_keys: Annotated[frozenset[str], NoDecode] = frozenset({DEFAULT_API_KEY})
    fault_seed: int = 0
    fault_timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, ge=0)
    # uvicorn takes whole seconds for how long in-flight requests may finish after a stop.
    shutdown_grace_s: int = Field(default=3, ge=1)

    @field_validator("sms_receipt_url", mode="before")
    @classmethod
    def _empty_url_means_none(cls, value: object) -> object:
        # Compose files and shells often set a variable to "" to mean "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sms_api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(key.strip() for key in value.split(",") if key.strip())
        return value
