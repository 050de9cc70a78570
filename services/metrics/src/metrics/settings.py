"""metrics settings, env prefix ``FUNNEL_METRICS_``."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.delivery import EmailSettings
from funnel_common.settings import CommonSettings, require_real_secrets
from funnel_common.types import Label

REPO_CONFIG = Path(__file__).resolve().parents[4] / "config"

DEFAULT_STAGE_PROBABILITIES = {
    "discovery": 10,
    "qualification": 20,
    "proposal": 50,
    "negotiation": 75,
    "commit": 90,
}
ACCEPT_SECONDS_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class MetricsSettings(EmailSettings, BaseSettings):
    """metrics settings, env prefix ``FUNNEL_METRICS_`` (email: ``EmailSettings``)."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_METRICS_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:15432/funnel",
        description="PostgreSQL (schema `metrics`)",
    )
    healthy_coverage_ratio: float = Field(
        default=3.0,
        gt=0,
        description="pipeline coverage at or above this is healthy (the 3-5x target rule)",
    )
    stage_probabilities: dict[str, int] = Field(
        default_factory=DEFAULT_STAGE_PROBABILITIES.copy,
        description="win probability of an open deal by CRM stage, whole percents (JSON)",
    )
    default_stage_probability: int = Field(
        default=10, ge=0, le=100, description="probability of a stage not in the map"
    )
    # A typo in a form's utm_source must not explode the series count.
    sources_file: Path = Field(
        default=REPO_CONFIG / "sources.yaml",
        description="the lead sources allow-list shared with lead-intake's forms (YAML, "
        "`sources: [...]`): exported as the Prometheus `source` label, others as `other`",
    )
    periods_before: int = Field(
        default=1, ge=0, le=8, description="quarters before the current one exported by period"
    )
    periods_after: int = Field(
        default=1, ge=0, le=8, description="quarters after the current one exported by period"
    )
    accept_seconds_buckets: list[float] = Field(
        default_factory=lambda: [float(b) for b in ACCEPT_SECONDS_BUCKETS],
        description="buckets of the time-to-accept histogram (JSON)",
    )

    # The Monday review pack (docs/marketing.md): when, and where it goes.
    review_day: Weekday = Field(
        default="mon", description="the weekday the review pack is sent, in the reporting zone"
    )
    review_time: time = Field(
        default=time(8, 0), description="the time of day it is sent (HH:MM, reporting zone)"
    )
    review_email_to: list[EmailStr] = Field(
        default_factory=list,
        description="who gets the review pack by email (JSON list); empty: no email",
    )
    review_slack_webhook_url: SecretStr | None = Field(
        default=None,
        description="a Slack incoming-webhook URL (it names the channel) for the review "
        "pack; unset: no Slack message",
    )
    review_late_after_minutes: int = Field(
        default=60,
        ge=0,
        le=10_080,
        description="a pack sent later than this after its time says it is late",
    )
    review_scan_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how often the worker looks for a pack due"
    )
    review_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="delivery attempts before a pack's email or Slack message is parked for good",
    )
    review_retry_seconds: float = Field(
        default=5.0, gt=0, description="first retry delay of a failed delivery (doubles, jitter)"
    )
    review_retry_max_seconds: float = Field(
        default=600.0, gt=0, description="the delivery retry delay's cap"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8003",
        pattern=r"^https?://[^\s]+$",
        description="where people reach metrics: the review pack links to "
        "`<public url>/review?week=YYYY-Www`",
    )
    common: CommonSettings = Field(default_factory=CommonSettings)
    _sources: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _real_secrets_outside_development(self) -> MetricsSettings:
        # The key opens the sealed notes the review pack shows (review_packs.py).
        require_real_secrets(
            {
                "FUNNEL_AUTH_SECRET": self.common.auth_secret,
                "FUNNEL_PERSONAL_DATA_KEY": self.common.personal_data_key,
            },
            environment=self.common.environment,
        )
        return self

    @model_validator(mode="after")
    def _read_sources(self) -> MetricsSettings:
        # Read once, when the settings are built: a missing or malformed list stops
        # the service at start-up rather than at its first scrape.
        self._sources = load_sources(self.sources_file)
        return self

    @property
    def review_weekday(self) -> int:
        """``review_day`` as an ISO weekday (1 = Monday)."""
        return WEEKDAYS.index(self.review_day) + 1

    @property
    def sources(self) -> list[str]:
        """The lead sources exported by name (``sources_file``)."""
        return list(self._sources)

    @field_validator("stage_probabilities")
    @classmethod
    def _whole_percents(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = sorted(stage for stage, percent in value.items() if not 0 <= percent <= 100)
        if wrong:
            raise ValueError(f"stage probabilities must be 0-100 percent: {', '.join(wrong)}")
        return value


class SourceList(BaseModel):
    """config/sources.yaml."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Label] = Field(min_length=1)


def load_sources(path: Path) -> list[str]:
    """The allow-list in ``path``; a ValueError names the file if it cannot be used."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return SourceList.model_validate(document).sources
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise ValueError(f"{path}: not a usable sources list ({error})") from error
