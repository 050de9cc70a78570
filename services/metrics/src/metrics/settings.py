from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.settings import CommonSettings


class MetricsSettings(BaseSettings):
    """metrics settings, env prefix ``FUNNEL_METRICS_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_METRICS_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:15432/funnel"
    host: str = "127.0.0.1"
    port: int = 8003
    run_workers: bool = True
    common: CommonSettings = Field(default_factory=CommonSettings)
