"""Composition shared by the three services: the typed runtime an app's lifespan opens.

``open_runtime`` migrates the schema, opens the pool, starts the outbox relay and the
consumer (when the service has them) and closes everything in reverse order. The
HTTP app and a stand-alone worker process use the same function.

The relay and the consumer run on an event loop of their own, in a thread
(:class:`~funnel_common.workers.WorkerThread`), with their own pool: on the request
loop they waited behind requests and ``/metrics`` scrapes, which cost events hundreds
of ms on their way through under load. ``Runtime.pool`` serves the request loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

from funnel_common import outbox
from funnel_common.consumer import ConsumerRunner, Handler
from funnel_common.db import create_pool, is_unavailable, migrate_dsn
from funnel_common.events import Envelope
from funnel_common.http import install_error_handlers
from funnel_common.kafka import broker_reachable
from funnel_common.outbox import OutboxRelay
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import (
    HttpMetricsMiddleware,
    PlatformMetrics,
    configure_logging,
    configure_tracing,
)
from funnel_common.workers import WorkerThread

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_SECONDS = 3.0

ExtraMetrics = Callable[["Runtime"], Awaitable[bytes]]
"""Renders a service's own metrics (e.g. projections read from PostgreSQL) per scrape."""


@dataclass(frozen=True)
class ConsumerSpec:
    """What a service consumes: its group, the topics, and the handler table."""

    group_id: str
    topics: list[str]
    handlers: Mapping[type[Envelope], Handler]


@dataclass
class Runtime:
    """What a running service holds: handed to routes via ``request.state``."""

    service: str
    settings: CommonSettings
    pool: asyncpg.Pool
    metrics: PlatformMetrics
    relay: OutboxRelay | None = None
    consumer: ConsumerRunner | None = None
    workers: WorkerThread | None = None
    """The loop the relay and the consumer run on (not the request loop)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Further workers on the request loop (e.g. handoff's SLA scanner)."""


@contextlib.asynccontextmanager
async def open_runtime(
    *,
    service: str,
    schema: str,
    dsn: str,
    migrations: Path,
    settings: CommonSettings,
    metrics: PlatformMetrics,
    publishes: bool,
    consumes: ConsumerSpec | None,
    run_workers: bool = True,
) -> AsyncIterator[Runtime]:
    """Migrate, open the pool, start relay and consumer; close all on exit."""
    await migrate_dsn(dsn, schema=schema, directory=migrations)
    pool = await create_pool(dsn, schema=schema)
    runtime = Runtime(service=service, settings=settings, pool=pool, metrics=metrics)
    try:
        if run_workers and (publishes or consumes is not None):
            runtime.workers = await _start_workers(
                runtime, dsn=dsn, schema=schema, publishes=publishes, consumes=consumes
            )
        yield runtime
    finally:
        await _stop_workers(runtime.tasks)
        if runtime.workers is not None:
            await runtime.workers.stop(grace_seconds=_SHUTDOWN_GRACE_SECONDS)
        try:
            await asyncio.wait_for(pool.close(), _SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            pool.terminate()


async def _start_workers(
    runtime: Runtime, *, dsn: str, schema: str, publishes: bool, consumes: ConsumerSpec | None
) -> WorkerThread:
    """The relay and the consumer on a worker loop, the consumer with a pool of its own
    (a pool belongs to the loop that opened it)."""
    workers = WorkerThread(f"{runtime.service}-workers")
    workers.start()
    worker_pool: asyncpg.Pool | None = None
    try:
        if consumes is not None:
            # The consumer applies one transaction at a time; a request-sized pool would
            # hold idle connections of PostgreSQL's bounded supply.
            worker_pool = await workers.call(create_pool(dsn, schema=schema, max_size=2))
    except BaseException:
        await workers.stop(grace_seconds=_SHUTDOWN_GRACE_SECONDS)
        raise
    if publishes:
        runtime.relay = OutboxRelay(
            dsn=dsn, schema=schema, settings=runtime.settings, metrics=runtime.metrics
        )
        workers.spawn(runtime.relay.run, name=f"{runtime.service}-relay")
    if consumes is not None and worker_pool is not None:
        runtime.consumer = ConsumerRunner(
            pool=worker_pool,
            settings=runtime.settings,
            group_id=consumes.group_id,
            topics=consumes.topics,
            handlers=consumes.handlers,
            metrics=runtime.metrics,
        )
        workers.spawn(runtime.consumer.run, name=f"{runtime.service}-consumer")
        workers.close_on_stop(worker_pool)
    return workers


async def _stop_workers(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the workers and give them a bounded time to close their clients.

    A Kafka client closing against a broker that is slow or gone can wait out its whole
    request timeout; a shutdown (a deploy, Ctrl-C) must not wait that long. Nothing is
    lost by not waiting: offsets are committed and outbox rows marked only after the
    work they stand for is done.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, still_running = await asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE_SECONDS)
    if still_running:
        log.warning(
            "workers did not stop in time; leaving them",
            extra={"workers": sorted(task.get_name() for task in still_running)},
        )


def build_app(
    *,
    service: str,
    title: str,
    settings: CommonSettings,
    metrics: PlatformMetrics,
    lifespan: Any,
    routers: list[APIRouter],
    extra_metrics: ExtraMetrics | None = None,
) -> FastAPI:
    """A FastAPI app with the platform's middleware, error mapping and probe routes."""
    configure_logging(settings, service)
    # Per-series "_created" gauges double every counter in the text format, and our
    # funnel counters are rebuilt from PostgreSQL on each scrape, so they would lie.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    app = FastAPI(title=title, lifespan=lifespan, version="0.1.0")
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=configure_tracing(settings, service),
        excluded_urls="healthz,readyz,metrics",
        # The ASGI receive/send sub-spans say nothing the request span does not, and
        # cost a span per chunk on every request.
        exclude_spans=["receive", "send"],
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    install_error_handlers(app)
    app.include_router(probe_router(metrics, extra_metrics))
    for router in routers:
        app.include_router(router)
    return app


def runtime_of(request: Request) -> Runtime:
    """The runtime the lifespan opened."""
    runtime: Runtime = request.state.runtime
    return runtime


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A request-scoped connection in one transaction, committed when the handler returns."""
    async with runtime_of(request).pool.acquire() as conn:
        async with conn.transaction():
            yield conn
        await outbox.wake_relay(conn)


Transaction = Annotated[asyncpg.Connection, Depends(connection, scope="function")]
"""A route's connection, in one transaction committed BEFORE the response is sent.

FastAPI's default scope for a dependency with ``yield`` runs its exit (here: the
commit) after the response has gone out, so a commit that fails (PostgreSQL shutting
down) would follow a 2xx and the caller would believe a lead was stored that was not.
With ``scope="function"`` the commit's failure becomes the answer (503), and a 2xx
means stored.
"""


async def _postgres_ready(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(1.0), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as error:
        if not is_unavailable(error):
            log.exception("readiness check failed")
        return False
    return True


def probe_router(metrics: PlatformMetrics, extra_metrics: ExtraMetrics | None) -> APIRouter:
    """``/healthz`` (alive), ``/readyz`` (dependencies) and ``/metrics``."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers and its workers run")
    async def healthz(request: Request) -> JSONResponse:
        runtime: Runtime | None = getattr(request.state, "runtime", None)
        workers = runtime.workers if runtime is not None else None
        if workers is not None and workers.stopped:
            # The relay or the consumer ended (logged with its traceback): the process
            # answers but no longer moves events, so it should be restarted.
            return JSONResponse(
                {"status": "worker stopped", "workers": sorted(workers.stopped)}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", summary="Readiness: PostgreSQL and the broker")
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        postgres = await _postgres_ready(runtime.pool)
        broker = await broker_reachable(runtime.settings)
        # Ready means "can take work": with the broker down, writes still land in the
        # outbox, so the broker only degrades readiness; PostgreSQL gates it.
        status = "ready" if postgres and broker else "degraded" if postgres else "unavailable"
        checks = {
            "postgres": "ok" if postgres else "down",
            "broker": "ok" if broker else "down",
        }
        if runtime.relay is not None:
            checks["outbox_relay"] = "leader" if runtime.relay.is_leader else "standby"
        if runtime.consumer is not None:
            checks["consumer"] = "assigned" if runtime.consumer.assigned else "waiting"
        return JSONResponse(
            {"status": status, "checks": checks},
            status_code=200 if postgres else 503,
            headers=None if postgres else {"Retry-After": "5"},
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        pool = runtime_of(request).pool
        metrics.db_pool_connections.labels("in_use").set(pool.get_size() - pool.get_idle_size())
        metrics.db_pool_connections.labels("idle").set(pool.get_idle_size())
        metrics.db_pool_max_connections.set(pool.get_max_size())
        body = generate_latest(metrics.registry)
        if extra_metrics is not None:
            body += await extra_metrics(runtime_of(request))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
