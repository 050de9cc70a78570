"""lead-intake's worker process: the outbox relay, the consumer of ``funnel.access`` (the
token projection every service keeps), and probes on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.access import access_only
from funnel_common.service import WorkerState, build_worker_app, run_workers
from funnel_common.telemetry import PlatformMetrics
from lead_intake import runtime
from lead_intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    metrics = PlatformMetrics(runtime.SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        async with (
            runtime.opened(settings, metrics, pool_max_size=2) as opened,
            run_workers(
                opened,
                dsn=settings.database_url,
                schema=runtime.SCHEMA,
                publishes=True,
                consumes=access_only("lead-intake"),
            ) as workers,
        ):
            yield {"runtime": opened, "workers": workers}

    return build_worker_app(
        service=runtime.SERVICE, settings=settings.common, metrics=metrics, lifespan=lifespan
    )
