"""A 2xx means stored: the request's transaction commits before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI

from funnel_common.service import Transaction, WebState, build_web_app, open_runtime
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics


def _app(database_url: str, settings: CommonSettings, migrations: Path) -> FastAPI:
    metrics = PlatformMetrics("scope-test")
    router = APIRouter()

    @router.post("/things/{thing}", status_code=201)
    async def add(thing: int, conn: Transaction) -> dict[str, int]:
        # Twice: the deferred unique constraint fails only at COMMIT, after this returns.
        await conn.execute("INSERT INTO things VALUES ($1), ($1)", thing)
        return {"thing": thing}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WebState]:
        async with open_runtime(
            service="scope-test", schema="scope", dsn=database_url, migrations=migrations,
            settings=settings, metrics=metrics,
        ) as runtime:  # fmt: skip
            yield {"runtime": runtime}

    return build_web_app(
        service="scope-test", title="Shared Funnel: scope test", settings=settings,
        metrics=metrics, lifespan=lifespan, routers=[router],
    )  # fmt: skip


async def test_a_commit_that_fails_is_the_answer_never_a_2xx(
    database_url: str, settings: CommonSettings, tmp_path: Path
) -> None:
    (tmp_path / "0001_things.sql").write_text(
        "CREATE TABLE things (id int, CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);"
    )
    app = _app(database_url, settings, tmp_path)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/things/7")

    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetchval("SELECT count(*) FROM scope.things")
    finally:
        await connection.close()
    assert stored == 0
    assert answer.status_code >= 500, answer.text
