from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.settings import CommonSettings


class IntakeSettings(BaseSettings):
    """lead-intake settings, env prefix ``FUNNEL_INTAKE_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:15432/funnel"
    host: str = "127.0.0.1"
    port: int = 8001
    # Off for a process that only serves HTTP while another relays the outbox.
    run_workers: bool = True
    common: CommonSettings = Field(default_factory=CommonSettings)
