"""metrics settings, env prefix ``FUNNEL_METRICS_``."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    common: CommonSettings = Field(default_factory=CommonSettings)
    _sources: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _read_sources(self) -> MetricsSettings:
        # Read once, when the settings are built: a missing or malformed list stops
        # the service at start-up rather than at its first scrape.
        self._sources = load_sources(self.sources_file)
        return self

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
