"""create_app(settings) -> FastAPI: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from funnel_common.service import build_app, open_runtime
from funnel_common.telemetry import PlatformMetrics
from handoff.handlers import CONSUMER
from handoff.settings import HandoffSettings

SERVICE = "handoff"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: HandoffSettings | None = None) -> FastAPI:
    settings = settings or HandoffSettings()
    metrics = PlatformMetrics(SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_runtime(
            service=SERVICE,
            schema="handoff",
            dsn=settings.database_url,
            migrations=MIGRATIONS,
            settings=settings.common,
            metrics=metrics,
            publishes=True,
            consumes=CONSUMER,
            run_workers=settings.run_workers,
        ) as runtime:
            yield {"runtime": runtime}

    return build_app(
        service=SERVICE,
        title="Shared Funnel: handoff",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[],
    )
