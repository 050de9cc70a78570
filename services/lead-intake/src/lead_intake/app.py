"""create_app(settings) -> FastAPI: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from funnel_common.service import build_app, open_runtime
from funnel_common.telemetry import PlatformMetrics
from lead_intake import api
from lead_intake.settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    metrics = PlatformMetrics(api.SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_runtime(
            service=api.SERVICE,
            schema="intake",
            dsn=settings.database_url,
            migrations=MIGRATIONS,
            settings=settings.common,
            metrics=metrics,
            publishes=True,
            consumes=None,
            run_workers=settings.run_workers,
        ) as runtime:
            yield {"runtime": runtime}

    return build_app(
        service=api.SERVICE,
        title="Shared Funnel: lead-intake",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[api.router],
    )
