"""create_app(settings) -> FastAPI: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from funnel_common.service import build_app, open_runtime
from funnel_common.telemetry import PlatformMetrics
from metrics import api, exposition
from metrics.handlers import consumer
from metrics.settings import MetricsSettings

SERVICE = "metrics"
SCHEMA = "metrics"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    metrics = PlatformMetrics(SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_runtime(
            service=SERVICE,
            schema=SCHEMA,
            dsn=settings.database_url,
            migrations=MIGRATIONS,
            settings=settings.common,
            metrics=metrics,
            # Target changes leave through the outbox (funnel.targets).
            publishes=True,
            consumes=consumer(settings.common.reporting_currency),
            run_workers=settings.run_workers,
        ) as runtime:
            yield {"runtime": runtime}

    return build_app(
        service=SERVICE,
        title="Shared Funnel: metrics",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[api.router(settings)],
        extra_metrics=exposition.renderer(settings),
    )
