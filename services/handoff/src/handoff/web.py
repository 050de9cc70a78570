"""handoff's web process: ``create_app(settings) -> FastAPI``, HTTP only, wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WebState, build_web_app
from funnel_common.telemetry import PlatformMetrics
from handoff import (
    SERVICE,
    api,
    feedback_api,
    feedback_pages,
    inbox,
    inbox_team,
    runtime,
    telemetry,
)
from handoff.settings import HandoffSettings


def create_app(settings: HandoffSettings | None = None) -> FastAPI:
    settings = settings or HandoffSettings()
    metrics = PlatformMetrics(SERVICE, relays=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WebState]:
        async with runtime.opened(settings, metrics) as opened:
            yield {"runtime": opened}

    return build_web_app(
        service=SERVICE,
        title="Shared Funnel: handoff",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[
            api.router,
            feedback_api.router(settings),
            inbox.router,
            inbox_team.router,
            feedback_pages.router(settings),
        ],
        extra_metrics=telemetry.renderer(settings),
    )
