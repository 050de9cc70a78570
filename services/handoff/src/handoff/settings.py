from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.settings import CommonSettings, require_real_secret


class HandoffSettings(BaseSettings):
    """handoff settings, env prefix ``FUNNEL_HANDOFF_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_HANDOFF_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:15432/funnel",
        description="PostgreSQL (schema `handoff`); also what `funnel token` uses",
    )

    # A breach is detected within one interval of its due date.
    scan_interval_seconds: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="how often due SLA deadlines and queued handoffs are looked for",
    )
    scan_batch_size: int = Field(default=100, ge=1, le=10_000, description="rows per scan step")
    due_soon_seconds: int = Field(
        default=900, ge=1, description="window of the `funnel_handoff_due_soon` gauge"
    )

    webhook_secret: SecretStr = Field(
        default=SecretStr("dev-webhook-secret-change-me"),
        description="signs outbound webhooks; in production the placeholder holds every "
        "notification until a real secret is set",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="per-request timeout of an outbound webhook"
    )
    webhook_poll_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="how often the notification queue is checked"
    )
    webhook_batch_size: int = Field(
        default=20, ge=1, le=1000, description="deliveries in flight per pass"
    )
    webhook_max_attempts: int = Field(
        default=12, ge=1, le=100, description="attempts before a notification is given up"
    )
    webhook_backoff_seconds: float = Field(
        default=1.0, gt=0, description="first retry delay of a notification (doubles)"
    )
    webhook_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="the retry delay's cap"
    )

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="where reps reach handoff (e.g. https://handoff.example.com); webhook "
        "bodies then carry `inbox_url`",
    )

    common: CommonSettings = Field(default_factory=CommonSettings)

    @property
    def webhooks_can_be_signed(self) -> bool:
        """False for the placeholder secret in production: notifications are then held.

        Not a startup refusal (as FUNNEL_AUTH_SECRET is): handoff's decisions must not
        stop for want of a notification key, and held notifications are delivered once
        the secret is set.
        """
        try:
            require_real_secret(
                self.webhook_secret,
                name="FUNNEL_HANDOFF_WEBHOOK_SECRET",
                environment=self.common.environment,
            )
        except ValueError:
            return False
        return True
