"""create_app(settings) -> FastAPI: wiring only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from funnel_common.service import build_app, open_runtime
from funnel_common.telemetry import PlatformMetrics
from handoff import api, gauges, inbox
from handoff.handlers import CONSUMER
from handoff.notify import Notifier
from handoff.scanner import run_scanner
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
            if settings.run_workers:
                # Cancelled with the runtime's own tasks on shutdown.
                runtime.tasks.append(
                    asyncio.create_task(
                        run_scanner(runtime.pool, settings), name="handoff-sla-scanner"
                    )
                )
                runtime.tasks.append(
                    asyncio.create_task(
                        Notifier(runtime.pool, settings).run(), name="handoff-notifier"
                    )
                )
            yield {"runtime": runtime}

    return build_app(
        service=SERVICE,
        title="Shared Funnel: handoff",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[api.router, inbox.router],
        extra_metrics=gauges.renderer(settings),
    )
