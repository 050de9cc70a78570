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

from funnel_common.delivery import SmtpServer
from funnel_common.settings import CommonSettings
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


class MetricsSettings(BaseSettings):
    """metrics settings, env prefix ``FUNNEL_METRICS_``."""

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
    # Email is off until a server is named, as in handoff (the same settings, its prefix).
    smtp_host: str | None = Field(
        default=None, description="SMTP server for the review pack's email; unset: no email"
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls` (port 587), `tls` (implicit TLS, port 465) or `none` "
        "(a local relay only)",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if any")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password, if any")
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="per-message SMTP timeout"
    )
    email_from: str = Field(
        default="Shared Funnel <funnel@localhost>",
        min_length=3,
        max_length=200,
        description="the From of the review pack's email",
    )

    common: CommonSettings = Field(default_factory=CommonSettings)
    _sources: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _read_sources(self) -> MetricsSettings:
        # Read once, when the settings are built: a missing or malformed list stops
        # the service at start-up rather than at its first scrape.
        self._sources = load_sources(self.sources_file)
        return self

    @property
    def smtp(self) -> SmtpServer | None:
        """Where the review pack's email is submitted; None: email is not configured."""
        if self.smtp_host is None:
            return None
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            tls=self.smtp_tls,
            username=self.smtp_username,
            password=self.smtp_password,
            timeout_seconds=self.smtp_timeout_seconds,
        )

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
