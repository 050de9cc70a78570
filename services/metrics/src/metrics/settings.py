from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.settings import CommonSettings

DEFAULT_STAGE_PROBABILITIES = {
    "discovery": 10,
    "qualification": 20,
    "proposal": 50,
    "negotiation": 75,
    "commit": 90,
}
DEFAULT_SOURCES = [
    "web",
    "webinar",
    "event",
    "referral",
    "partner",
    "paid_search",
    "paid_social",
    "organic",
    "outbound",
    "email",
]
ACCEPT_SECONDS_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800]


class MetricsSettings(BaseSettings):
    """metrics settings, env prefix ``FUNNEL_METRICS_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_METRICS_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:15432/funnel"
    # Coverage at or above this is healthy (the "3-5x the target" rule).
    healthy_coverage_ratio: float = Field(default=3.0, gt=0)
    # Win probability of an open deal by its CRM stage, in whole percents.
    stage_probabilities: dict[str, int] = Field(default_factory=DEFAULT_STAGE_PROBABILITIES.copy)
    default_stage_probability: int = Field(default=10, ge=0, le=100)
    # Prometheus `source` label: these values as they are, every other source as
    # "other", so a typo in a form's utm_source cannot explode the series count.
    sources: list[str] = Field(default_factory=DEFAULT_SOURCES.copy)
    # Quarters exported with a `period` label: this many before and after the current.
    periods_before: int = Field(default=1, ge=0, le=8)
    periods_after: int = Field(default=1, ge=0, le=8)
    accept_seconds_buckets: list[float] = Field(
        default_factory=lambda: [float(b) for b in ACCEPT_SECONDS_BUCKETS]
    )
    common: CommonSettings = Field(default_factory=CommonSettings)

    @field_validator("stage_probabilities")
    @classmethod
    def _whole_percents(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = sorted(stage for stage, percent in value.items() if not 0 <= percent <= 100)
        if wrong:
            raise ValueError(f"stage probabilities must be 0-100 percent: {', '.join(wrong)}")
        return value
