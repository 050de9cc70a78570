"""metrics' worker process: the consumer of every funnel topic, the outbox relay (target
changes leave on ``funnel.targets``), the weekly review pack (its timer and deliveries),
and probes on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WorkerState, build_worker_app, run_workers
from funnel_common.telemetry import PlatformMetrics
from metrics import runtime
from metrics.handlers import consumer
from metrics.review_worker import ReviewWorker
from metrics.settings import MetricsSettings


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    metrics = PlatformMetrics(runtime.SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        # The consumer and the review worker each hold at most one connection at a time
        # (the review worker's pass may hold a second while it reads a pack to send).
        async with (
            runtime.opened(settings, metrics, pool_max_size=4) as opened,
            run_workers(
                opened,
                dsn=settings.database_url,
                schema=runtime.SCHEMA,
                publishes=True,
                consumes=consumer(settings.common.reporting_currency),
                more={"review": ReviewWorker(opened.pool, settings, opened.metrics).run},
            ) as workers,
        ):
            yield {"runtime": opened, "workers": workers}

    return build_worker_app(
        service=runtime.SERVICE, settings=settings.common, metrics=metrics, lifespan=lifespan
    )
