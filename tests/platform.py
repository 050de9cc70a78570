"""The three services in-process (real PostgreSQL, real broker), driven over ASGI: each
as its two processes would run, a web app and a worker app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from funnel_common.settings import CommonSettings
from handoff import web as handoff_web
from handoff import worker as handoff_worker
from handoff.settings import HandoffSettings
from lead_intake import web as intake_web
from lead_intake import worker as intake_worker
from lead_intake.settings import IntakeSettings
from metrics import web as metrics_web
from metrics import worker as metrics_worker
from metrics.settings import MetricsSettings
from tests.helpers import eventually, parse_metric


@contextlib.asynccontextmanager
async def serving(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan) and a client that reaches it over ASGI."""
    # Shutdown stops Kafka clients; on a loaded 2-core CI box that can pass
    # asgi-lifespan's 5 s default.
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=f"http://{name}"
        ) as client,
    ):
        yield client


@dataclass
class Platform:
    intake: httpx.AsyncClient
    handoff: httpx.AsyncClient
    metrics: httpx.AsyncClient
    workers: dict[str, httpx.AsyncClient]
    """Each service's worker process (its probes and /metrics), by service name."""

    async def metric(self, name: str, labels: str = "") -> float | None:
        answer = await self.metrics.get("/metrics")
        return parse_metric(answer.text, name, labels)

    async def wait_for_metric(self, name: str, value: float, timeout: float = 10.0) -> None:
        await eventually(
            lambda: self.metric(name),
            until=lambda seen: seen == value,
            timeout=timeout,
            what=f"{name} == {value}",
        )


@contextlib.asynccontextmanager
async def run_platform(database_url: str, settings: CommonSettings) -> AsyncIterator[Platform]:
    intake = IntakeSettings(database_url=database_url, common=settings)
    handoff = HandoffSettings(database_url=database_url, common=settings)
    metrics = MetricsSettings(database_url=database_url, common=settings)
    apps = {
        "intake": intake_web.create_app(intake),
        "intake-worker": intake_worker.create_app(intake),
        "handoff": handoff_web.create_app(handoff),
        "handoff-worker": handoff_worker.create_app(handoff),
        "metrics": metrics_web.create_app(metrics),
        "metrics-worker": metrics_worker.create_app(metrics),
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(serving(app, name)) for name, app in apps.items()
        }
        yield Platform(
            intake=clients["intake"],
            handoff=clients["handoff"],
            metrics=clients["metrics"],
            workers={
                name.removesuffix("-worker"): client
                for name, client in clients.items()
                if name.endswith("-worker")
            },
        )
