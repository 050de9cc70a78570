"""handoff's worker process: the outbox relay, the lead consumer, the SLA scanner and the
notifier, and probes on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WorkerState, build_worker_app, run_workers
from funnel_common.telemetry import PlatformMetrics
from handoff import SERVICE, runtime
from handoff.handlers import CONSUMER
from handoff.notifier import Notifier
from handoff.scanner import run_scanner
from handoff.settings import HandoffSettings


def create_app(settings: HandoffSettings | None = None) -> FastAPI:
    settings = settings or HandoffSettings()
    metrics = PlatformMetrics(SERVICE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        # The consumer, the scanner and the notifier each hold at most one connection
        # at a time; the relay has its own listening connection.
        async with (
            runtime.opened(settings, metrics, pool_max_size=4) as opened,
            run_workers(
                opened,
                dsn=settings.database_url,
                schema=runtime.SCHEMA,
                publishes=True,
                consumes=CONSUMER,
                more={
                    "sla-scanner": lambda: run_scanner(opened.pool, settings),
                    "notifier": Notifier(opened.pool, settings, opened.metrics).run,
                },
            ) as workers,
        ):
            yield {"runtime": opened, "workers": workers}

    return build_worker_app(
        service=SERVICE, settings=settings.common, metrics=metrics, lifespan=lifespan
    )
