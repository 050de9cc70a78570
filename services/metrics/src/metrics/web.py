"""metrics' web process: ``create_app(settings) -> FastAPI``, HTTP only, wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WebState, build_web_app
from funnel_common.telemetry import PlatformMetrics
from metrics import api, campaigns_api, exposition, review_pages, runtime
from metrics.settings import MetricsSettings


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    metrics = PlatformMetrics(runtime.SERVICE, relays=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WebState]:
        async with runtime.opened(settings, metrics) as opened:
            yield {"runtime": opened}

    return build_web_app(
        service=runtime.SERVICE,
        title="Shared Funnel: metrics",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[
            api.router(settings),
            campaigns_api.router(settings),
            *review_pages.routers(settings),
        ],
        extra_metrics=exposition.renderer(settings),
    )
