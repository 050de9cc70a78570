"""Composition shared by the three services: a ``web`` process and a ``worker`` process.

Each service runs as two processes, both built by its composition root
(``<service>/runtime.py``):

- ``web`` (``<service>/web.py``) serves HTTP only: its routes, ``/healthz``,
  ``/readyz``, ``/metrics`` and the API docs;
- ``worker`` (``<service>/worker.py``) runs the background work (the outbox relay, the
  consumer, and in handoff the SLA scanner and the notifier) as tasks on its one event
  loop, and serves ``/healthz``, ``/readyz`` and ``/metrics`` on a port of its own.

They scale apart: web by requests, worker by partitions. A web process wakes the relay
in its worker with PostgreSQL's NOTIFY (:func:`funnel_common.outbox.transaction`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from funnel_common import outbox
from funnel_common.consumer import ConsumerRunner, Handler
from funnel_common.db import create_pool, is_unavailable, migrate_dsn
from funnel_common.events import Envelope
from funnel_common.http import BodyLimitMiddleware, install_error_handlers
from funnel_common.kafka import broker_reachable
from funnel_common.outbox import OutboxRelay
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import (
    HttpMetricsMiddleware,
    PlatformMetrics,
    configure_logging,
    configure_tracing,
)

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_SECONDS = 3.0

ExtraMetrics = Callable[["Runtime"], Awaitable[bytes]]
"""Renders a service's own metrics (e.g. projections read from PostgreSQL) per scrape."""


EventT = TypeVar("EventT", bound=Envelope)


def handles(
    event_type: type[EventT], handler: Callable[[asyncpg.Connection, EventT], Awaitable[None]]
) -> tuple[type[Envelope], Handler]:
    """One row of a handler table: mypy checks that ``handler`` takes ``event_type``.

    A table is ``dict([handles(LeadQualified, on_lead_qualified), ...])``: a plain
    ``{LeadQualified: on_lead_qualified}`` would type every handler as taking any event.
    """
    return event_type, handler


@dataclass(frozen=True)
class ConsumerSpec:
    """What a service consumes: its group, the topics, and the handler table."""

    group_id: str
    topics: list[str]
    handlers: Mapping[type[Envelope], Handler]


@dataclass(frozen=True)
class Runtime:
    """What a running process holds, opened once by its lifespan."""

    service: str
    settings: CommonSettings
    pool: asyncpg.Pool
    metrics: PlatformMetrics


class WebState(TypedDict):
    """The lifespan state of a web process (a service's own state adds to it)."""

    runtime: Runtime


@dataclass
class Workers:
    """The background tasks of a worker process, on its event loop.

    A task is meant to run until the process stops; one that ends on its own is logged
    with its traceback and named in :attr:`stopped`, which ``/healthz`` reports (the
    process answers but no longer does its work, so it should be restarted).
    """

    relay: OutboxRelay | None = None
    consumer: ConsumerRunner | None = None
    stopped: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task named ``name`` until :meth:`stop`."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self.stopped.append(task.get_name())
        error = task.exception()
        log.error(
            "worker stopped",
            extra={"worker": task.get_name()},
            exc_info=(type(error), error, error.__traceback__) if error is not None else None,
        )

    async def stop(self) -> None:
        """Cancel the tasks and give them a bounded time to close their clients.

        A Kafka client closing against a broker that is slow or gone can wait out its
        whole request timeout; a shutdown (a deploy, Ctrl-C) must not wait that long.
        Nothing is lost by not waiting: offsets are committed and outbox rows marked only
        after the work they stand for is done.
        """
        for task in self._tasks:
            task.cancel()
        if not self._tasks:
            return
        _, still_running = await asyncio.wait(self._tasks, timeout=_SHUTDOWN_GRACE_SECONDS)
        if still_running:
            log.warning(
                "workers did not stop in time; leaving them",
                extra={"workers": sorted(task.get_name() for task in still_running)},
            )


class WorkerState(TypedDict):
    """The lifespan state of a worker process."""

    runtime: Runtime
    workers: Workers


@contextlib.asynccontextmanager
async def open_runtime(
    *,
    service: str,
    schema: str,
    dsn: str,
    migrations: Path,
    settings: CommonSettings,
    metrics: PlatformMetrics,
    pool_max_size: int = 10,
) -> AsyncIterator[Runtime]:
    """Migrate the schema and open the pool; close it on exit.

    Both processes migrate at start-up: the runner holds an advisory lock, so the second
    finds nothing to do.
    """
    await migrate_dsn(dsn, schema=schema, directory=migrations)
    pool = await create_pool(
        dsn,
        schema=schema,
        max_size=pool_max_size,
        acquire_timeout=settings.db_acquire_timeout_seconds,
        statement_timeout=settings.db_statement_timeout_seconds,
    )
    try:
        yield Runtime(service=service, settings=settings, pool=pool, metrics=metrics)
    finally:
        try:
            await asyncio.wait_for(pool.close(), _SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            pool.terminate()


@contextlib.asynccontextmanager
async def run_workers(
    runtime: Runtime,
    *,
    dsn: str,
    schema: str,
    publishes: bool,
    consumes: ConsumerSpec | None,
    more: Mapping[str, Callable[[], Coroutine[Any, Any, None]]] | None = None,
) -> AsyncIterator[Workers]:
    """Start a worker process's tasks: the relay (if the service publishes), the consumer
    (if it consumes) and ``more`` (name → work); stop them all on exit."""
    workers = Workers()
    if publishes:
        workers.relay = OutboxRelay(
            dsn=dsn, schema=schema, settings=runtime.settings, metrics=runtime.metrics
        )
        workers.spawn(f"{runtime.service}-relay", workers.relay.run())
    if consumes is not None:
        workers.consumer = ConsumerRunner(
            pool=runtime.pool,
            settings=runtime.settings,
            group_id=consumes.group_id,
            topics=consumes.topics,
            handlers=consumes.handlers,
            metrics=runtime.metrics,
        )
        workers.spawn(f"{runtime.service}-consumer", workers.consumer.run())
    for name, work in (more or {}).items():
        workers.spawn(f"{runtime.service}-{name}", work())
    try:
        yield workers
    finally:
        await workers.stop()


def _platform_app(
    *, service: str, title: str, settings: CommonSettings, lifespan: Any, docs: bool
) -> FastAPI:
    configure_logging(settings, service)
    # Per-series "_created" gauges double every counter in the text format, and our
    # funnel counters are rebuilt from PostgreSQL on each scrape, so they would lie.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    if docs:
        app = FastAPI(title=title, lifespan=lifespan, version="0.1.0")
    else:
        app = FastAPI(
            title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
        )
    install_error_handlers(app)
    return app


def build_web_app(
    *,
    service: str,
    title: str,
    settings: CommonSettings,
    metrics: PlatformMetrics,
    lifespan: Any,
    routers: list[APIRouter],
    extra_metrics: ExtraMetrics | None = None,
    max_body_bytes: int | None = None,
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A service's web app: its routers, the platform's middleware, error mapping and
    probe routes.

    Middleware, outermost first: the client's address from trusted proxies only
    (``trusted_proxies``), the HTTP metrics, then the body limit (``max_body_bytes``,
    else ``http_max_body_bytes``; ``body_limits`` maps path prefixes to their own),
    which also keeps an aborted upload from counting as a server error."""
    app = _platform_app(
        service=service, title=title, settings=settings, lifespan=lifespan, docs=True
    )
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=configure_tracing(settings, service),
        excluded_urls="healthz,readyz,metrics",
        # The ASGI receive/send sub-spans say nothing the request span does not, and
        # cost a span per chunk on every request.
        exclude_spans=["receive", "send"],
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=max_body_bytes or settings.http_max_body_bytes,
        overrides=body_limits,
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    if settings.trusted_proxies:
        # uvicorn's own implementation (the rightmost address no trusted proxy added),
        # configured by our settings: the server runs with --no-proxy-headers, so a
        # client on the same host cannot choose its address with X-Forwarded-For.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.include_router(probe_router(metrics, extra_metrics, checks_broker=False))
    for router in routers:
        app.include_router(router)
    return app


def build_worker_app(
    *, service: str, settings: CommonSettings, metrics: PlatformMetrics, lifespan: Any
) -> FastAPI:
    """A service's worker process: its lifespan runs the background tasks; HTTP serves
    only the probes and ``/metrics`` (no API, no docs)."""
    configure_tracing(settings, service)
    app = _platform_app(
        service=f"{service}-worker",
        title=f"Shared Funnel: {service} worker",
        settings=settings,
        lifespan=lifespan,
        docs=False,
    )
    app.include_router(probe_router(metrics, None, checks_broker=True))
    return app


def runtime_of(request: Request) -> Runtime:
    """The runtime the lifespan opened."""
    runtime: Runtime = request.state.runtime
    return runtime


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A request-scoped connection in one unit of work (see ``outbox.transaction``)."""
    async with outbox.transaction(runtime_of(request).pool) as conn:
        yield conn


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


def probe_router(
    metrics: PlatformMetrics, extra_metrics: ExtraMetrics | None, *, checks_broker: bool
) -> APIRouter:
    """``/healthz`` (alive), ``/readyz`` (serving, and how its dependencies are) and
    ``/metrics``.

    Readiness is not gated on PostgreSQL or the broker, which every replica shares: when
    PostgreSQL is away, each replica would fail its probe together, Kubernetes would take
    every pod out of the Service, and clients would meet the ingress's bare 502/503 (or
    a refused connection) instead of our ``503`` with ``Retry-After``, and a delay to
    come back after the database did. A process that has started answers 200 and says
    in the body what is down (``degraded``). A process that cannot reach PostgreSQL at
    start-up never starts (its migrations fail), so a rollout with a wrong database URL
    still stops at its first pod. Only a worker talks to the broker, so only a worker
    reports it. docs/operations.md, "Readiness", has the reasoning.
    """
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers (and its workers run)")
    async def healthz(request: Request) -> JSONResponse:
        workers: Workers | None = getattr(request.state, "workers", None)
        if workers is not None and workers.stopped:
            return JSONResponse(
                {"status": "worker stopped", "workers": sorted(workers.stopped)}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @router.get(
        "/readyz", summary="Readiness: serving; the body reports PostgreSQL (and the broker)"
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        postgres = await _postgres_ready(runtime.pool)
        broker = await broker_reachable(runtime.settings) if checks_broker else True
        checks = {"postgres": "ok" if postgres else "down"}
        if checks_broker:
            checks["broker"] = "ok" if broker else "down"
        workers: Workers | None = getattr(request.state, "workers", None)
        if workers is not None and workers.relay is not None:
            checks["outbox_relay"] = "leader" if workers.relay.is_leader else "standby"
        if workers is not None and workers.consumer is not None:
            checks["consumer"] = "assigned" if workers.consumer.assigned else "waiting"
        # With PostgreSQL down, writes answer 503 with Retry-After from this process;
        # with the broker down, the outbox keeps the work. Either way: degraded, serving.
        status = "ready" if postgres and broker else "degraded"
        return JSONResponse({"status": status, "checks": checks})

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
