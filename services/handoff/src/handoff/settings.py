"""handoff settings, env prefix ``FUNNEL_HANDOFF_``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.delivery import EmailSettings
from funnel_common.settings import CommonSettings, require_real_secrets
from handoff.notifications import Channels


class HandoffSettings(EmailSettings, BaseSettings):
    """handoff settings, env prefix ``FUNNEL_HANDOFF_`` (email: ``EmailSettings``)."""

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
        default=SecretStr("whsec_ZGV2LWhhbmRvZmYtd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"),
        description="signs outbound webhooks (Standard Webhooks: `whsec_` + base64 of 24-64 "
        "random bytes, which receivers pass to their Standard Webhooks library as is); "
        "refused in production while a placeholder, short or shared with another secret",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="per-request timeout of an outbound webhook"
    )
    webhook_poll_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="how often the notification queue is checked"
    )
    webhook_batch_size: int = Field(
        default=20, ge=1, le=1000, description="notifications (webhooks, emails) in flight per pass"
    )
    webhook_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="attempts before a notification (webhook or email) is parked for good",
    )
    webhook_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        description="first retry delay of a notification (doubles each attempt, with jitter)",
    )
    webhook_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="the notification retry delay's cap"
    )

    public_url: str = Field(
        default="http://127.0.0.1:8002",
        pattern=r"^https?://[^\s]+$",
        description="where people reach handoff: notifications link to "
        "`<public url>/inbox/handoffs/<id>` (e.g. https://handoff.example.com)",
    )

    feedback_export_max_rows: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="most rows one feedback CSV export holds; a larger one is refused "
        "(422, narrow the filters) before anything is sent",
    )

    common: CommonSettings = Field(default_factory=CommonSettings)

    def channels(self) -> Channels:
        """What notifications can be delivered here: email only once a server is named."""
        return Channels(email=self.smtp_host is not None)

    @model_validator(mode="after")
    def _real_secrets_outside_development(self) -> Self:
        require_real_secrets(
            {
                "FUNNEL_AUTH_SECRET": self.common.auth_secret,
                "FUNNEL_PERSONAL_DATA_KEY": self.common.personal_data_key,
                "FUNNEL_HANDOFF_WEBHOOK_SECRET": self.webhook_secret,
            },
            environment=self.common.environment,
        )
        return self
