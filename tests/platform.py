"""The three services in-process (real PostgreSQL, real broker), driven over ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from asgi_lifespan import LifespanManager

from funnel_common.settings import CommonSettings
from handoff.app import create_app as create_handoff
from handoff.settings import HandoffSettings
from lead_intake.app import create_app as create_intake
from lead_intake.settings import IntakeSettings
from metrics.app import create_app as create_metrics
from metrics.settings import MetricsSettings
from tests.helpers import eventually, parse_metric


@dataclass
class Platform:
    intake: httpx.AsyncClient
    handoff: httpx.AsyncClient
    metrics: httpx.AsyncClient

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
    apps = (
        create_intake(IntakeSettings(database_url=database_url, common=settings)),
        create_handoff(HandoffSettings(database_url=database_url, common=settings)),
        create_metrics(MetricsSettings(database_url=database_url, common=settings)),
    )
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for app, name in zip(apps, ("intake", "handoff", "metrics"), strict=True):
            manager = await stack.enter_async_context(LifespanManager(app, startup_timeout=30))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=manager.app), base_url=f"http://{name}"
                    )
                )
            )
        yield Platform(*clients)
