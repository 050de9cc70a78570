"""create_app(settings) -> FastAPI: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from funnel_common.service import build_app, open_runtime
from funnel_common.telemetry import PlatformMetrics
from metrics import exposition
from metrics.handlers import CONSUMER
from metrics.settings import MetricsSettings

SERVICE = "metrics"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    metrics = PlatformMetrics(SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_runtime(
            service=SERVICE,
            schema="metrics",
            dsn=settings.database_url,
            migrations=MIGRATIONS,
            settings=settings.common,
            metrics=metrics,
            publishes=False,
            consumes=CONSUMER,
            run_workers=settings.run_workers,
        ) as runtime:
            yield {"runtime": runtime}

    return build_app(
        service=SERVICE,
        title="Shared Funnel: metrics",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[],
        extra_metrics=exposition.render,
    )
