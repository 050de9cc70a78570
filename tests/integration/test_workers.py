"""A worker process: the relay and the consumer as tasks on its one loop, woken by the
web process's commits through PostgreSQL, its health reported on its own probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from funnel_common import outbox
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.events import LEADS_TOPIC, LeadCaptured
from funnel_common.service import (
    ConsumerSpec,
    Workers,
    WorkerState,
    build_worker_app,
    open_runtime,
    run_workers,
)
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from tests.helpers import eventually
from tests.integration.test_outbox import _lead
from tests.platform import serving

SCHEMA = "workers"


async def test_a_worker_that_fails_is_logged_and_fails_healthz(
    database_url: str, settings: CommonSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app = _worker_app(database_url, settings, tmp_path, more={"broken": broken})
    # Building the app routed the root logger to its own JSON handler only.
    logging.getLogger().addHandler(caplog.handler)
    async with serving(app, "worker") as client:
        healthz = await eventually(
            lambda: client.get("/healthz"), until=lambda r: r.status_code == 503, what="noticed"
        )

    assert healthz.json() == {"status": "worker stopped", "workers": ["workers-test-broken"]}
    failure = next(r for r in caplog.records if r.getMessage() == "worker stopped")
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None
    assert "boom" in str(failure.exc_info[1])


async def test_stopping_is_bounded_when_a_worker_ignores_cancellation() -> None:
    stop_ignoring = asyncio.Event()

    async def stubborn() -> None:
        while not stop_ignoring.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    workers = Workers()
    workers.spawn("stubborn", stubborn())
    started = time.monotonic()
    await workers.stop()
    took = time.monotonic() - started
    stop_ignoring.set()

    assert took < 5.0


async def test_a_rolled_back_unit_of_work_leaves_no_event(
    database_url: str, settings: CommonSettings, tmp_path: Path
) -> None:
    await migrate_dsn(database_url, schema=SCHEMA, directory=tmp_path)
    pool = await create_pool(database_url, schema=SCHEMA)
    try:

        async def enqueue_then_fail() -> None:
            async with outbox.transaction(pool) as connection:
                await outbox.enqueue(connection, _lead())
                raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError, match="changed my mind"):
            await enqueue_then_fail()

        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await pool.close()


@pytest.mark.both_brokers
async def test_the_worker_relays_and_consumes_what_the_web_side_wrote(
    database_url: str, topics: CommonSettings, tmp_path: Path
) -> None:
    (tmp_path / "0001_effects.sql").write_text("CREATE TABLE effects (event_id uuid);")

    async def on_lead(connection: asyncpg.Connection, event: Any) -> None:
        await connection.execute("INSERT INTO effects VALUES ($1)", event.id)

    consumes = ConsumerSpec("workers-test", [LEADS_TOPIC], {LeadCaptured: on_lead})
    app = _worker_app(database_url, topics, tmp_path, consumes=consumes)
    async with serving(app, "worker") as client:
        pool = await create_pool(database_url, schema=SCHEMA)
        try:
            async with outbox.transaction(pool) as connection:
                await outbox.enqueue(connection, _lead())

            await eventually(lambda: _effects(pool), until=lambda n: n == 1, timeout=20)
            healthz = await client.get("/healthz")
            readyz = await client.get("/readyz")
        finally:
            await pool.close()

    assert healthz.status_code == 200
    assert readyz.json()["checks"]["outbox_relay"] == "leader"
    assert readyz.json()["checks"]["consumer"] in ("assigned", "waiting")


def _worker_app(
    database_url: str,
    settings: CommonSettings,
    migrations: Path,
    *,
    consumes: ConsumerSpec | None = None,
    more: dict[str, Any] | None = None,
) -> FastAPI:
    metrics = PlatformMetrics("workers-test")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[WorkerState]:
        async with (
            open_runtime(
                service="workers-test", schema=SCHEMA, dsn=database_url, migrations=migrations,
                settings=settings, metrics=metrics,
            ) as runtime,
            run_workers(
                runtime, dsn=database_url, schema=SCHEMA, publishes=True, consumes=consumes,
                more=more,
            ) as workers,
        ):  # fmt: skip
            yield {"runtime": runtime, "workers": workers}

    return build_worker_app(
        service="workers-test", settings=settings, metrics=metrics, lifespan=lifespan
    )


async def _value(value: Any) -> Any:
    return value


async def _unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def _effects(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM effects")
    return count
