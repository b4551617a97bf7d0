"""notify's settings (prefix NOTIFY_); shared infrastructure comes from shared.settings (prefix KHEDMAT_)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.notify.domain import parse_quiet_hours
from shared.rate_limits import parse_limits
from shared.settings import AuditSettings, DevelopmentSecret, ServiceSettings

# Shared with identity's development default (IDENTITY_NOTIFY_KEY), so a local desk works out of the box.
DEV_INTERNAL_KEY = "dev-only-internal-key-change-me"


class NotifySettings(ServiceSettings):
    """How notify listens, where it keeps its records, how it reaches the SMS gateway and mail relay."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_")

    port: int = 8084
    database_url: str = "sqlite+aiosqlite:///var/notify.db"
    sms_base_url: str = "http://127.0.0.1:8091"
    # Kavenegar puts the key in the URL path, so it is a secret that must stay out of logs, errors and spans.
    sms_api_key: DevelopmentSecret = SecretStr("sandbox-sms-key")
    sms_sender: str = "10004346"
    # A second gateway to fail over to (same API shape), used when set; its key is as secret as the first's.
    sms_fallback_base_url: str | None = None
    sms_fallback_api_key: SecretStr | None = None
    sms_fallback_sender: str | None = None
    # After a failover, how long the gateway that worked keeps the traffic before the first is tried again.
    sms_retry_primary_s: float = Field(default=60.0, gt=0)
    # SMS that can wait are held during these hours of Tehran's clock ("22:00-07:00"; empty: never held).
    quiet_hours: str = ""
    # How often the sweeper looks for notifications to send: held SMS whose quiet hours have ended, and rows
    # a crashed sender left unsent for `stale_after_s`.
    sweep_every_s: float = Field(default=30.0, gt=0)
    stale_after_s: float = Field(default=120.0, gt=0)
    # Status changes handled at once (each request's own changes stay in order).
    concurrency: int = Field(default=32, ge=1, le=1024)
    # Each provider's contract rate, shared by all replicas through Redis ("200/second", "10000/minute").
    sms_rate_limit: str = "200/second"
    sms_fallback_rate_limit: str | None = None
    smtp_rate_limit: str = "50/second"
    # How often notification outcomes not yet on desk.notifications are looked for (when none are pending).
    outcome_every_s: float = Field(default=1.0, gt=0)
    # What the desk's services present on the internal routes (identity, to have a sign-in code texted).
    internal_key: DevelopmentSecret = SecretStr(DEV_INTERNAL_KEY)
    # The gateways post delivery receipts to /internal/v1/sms/receipts?token=<this> (configured at the provider).
    receipt_token: DevelopmentSecret = SecretStr("dev-only-receipt-token")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    # True demands STARTTLS and fails when the relay does not offer it; False speaks plain SMTP (a local
    # relay). No opportunistic middle ground: it is silently strippable and breaks on self-signed relays.
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "no-reply@khedmat.example"
    send_timeout_s: float = Field(default=5.0, gt=0)
    group_id: str = "notify"
    # How long a status change waits in place for its request's contact (read from the other topic) before
    # it is handed back for redelivery; covers a contacts consumer that is catching up on a backlog.
    contact_wait_s: float = Field(default=10.0, ge=0)
    # Reading a request's notifications is recorded on desk.access (shared/access_audit.py); the contacts keep
    # their applicant's subject digest for it.
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _quiet_hours_readable(self) -> NotifySettings:
        parse_quiet_hours(self.quiet_hours)  # a typo fails at start, not at 22:00
        return self

    @model_validator(mode="after")
    def _rates_readable(self) -> NotifySettings:
        for rate in (self.sms_rate_limit, self.sms_fallback_rate_limit, self.smtp_rate_limit):
            if rate is not None:
                parse_limits(rate)
        return self
