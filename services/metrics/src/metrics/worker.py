"""metrics' worker process: the consumer of every funnel topic, the outbox relay (target
changes leave on ``funnel.targets``), and probes on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WorkerState, build_worker_app, run_workers
from funnel_common.telemetry import PlatformMetrics
from metrics import runtime
from metrics.handlers import consumer
from metrics.settings import MetricsSettings


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
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
                consumes=consumer(settings.common.reporting_currency),
            ) as workers,
        ):
            yield {"runtime": opened, "workers": workers}

    return build_worker_app(
        service=runtime.SERVICE, settings=settings.common, metrics=metrics, lifespan=lifespan
    )
