"""The relay and the consumer run on a worker loop in a thread of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from funnel_common import outbox
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.outbox import OutboxRelay
from funnel_common.service import ConsumerSpec, Runtime, build_app, open_runtime
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from funnel_common.workers import WorkerThread
from tests.helpers import eventually
from tests.integration.test_outbox import _lead

SCHEMA = "workers"


@contextlib.asynccontextmanager
async def worker_thread() -> AsyncIterator[WorkerThread]:
    workers = WorkerThread("test-workers")
    workers.start()
    try:
        yield workers
    finally:
        await workers.stop(grace_seconds=1.0)


async def test_a_worker_that_fails_is_logged_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    async with worker_thread() as workers:
        workers.spawn(broken, name="broken-worker")
        await eventually(lambda: _value(workers.stopped), what="the failure noticed")

    assert workers.stopped == ["broken-worker"]
    failure = next(r for r in caplog.records if r.getMessage() == "worker stopped")
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None
    assert "boom" in str(failure.exc_info[1])


async def test_stopping_is_bounded_when_a_worker_ignores_cancellation() -> None:
    release = threading.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    workers = WorkerThread("stubborn-workers")
    workers.start()
    workers.spawn(stubborn, name="stubborn")
    started = time.monotonic()
    await workers.stop(grace_seconds=0.3)
    took = time.monotonic() - started
    release.set()

    assert took < 2.0


async def test_a_cross_thread_wake_reaches_a_relay_on_its_own_loop(
    database_url: str, topics: CommonSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's poll is 60 s away, so only the wake can publish in time. asyncio's
    debug mode (set before the worker loop is made) refuses a wake that is not
    thread-safe instead of letting it work by luck when something else wakes the loop."""
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    await migrate_dsn(database_url, schema=SCHEMA, directory=tmp_path)
    pool = await create_pool(database_url, schema=SCHEMA)
    relay = OutboxRelay(
        dsn=database_url,
        schema=SCHEMA,
        settings=topics.model_copy(update={"outbox_poll_interval_seconds": 60.0}),
        metrics=PlatformMetrics("test"),
    )
    try:
        async with worker_thread() as workers:
            workers.spawn(relay.run, name="relay")
            # A first event, woken by NOTIFY: once it is sent, the relay is idle.
            async with pool.acquire() as connection:
                async with connection.transaction():
                    await outbox.enqueue(connection, _lead())
                await outbox.wake_relay(connection)
            await eventually(lambda: _unsent(pool), until=lambda n: n == 0, timeout=10)
            # The second is written without the NOTIFY that wake_relay sends.
            async with pool.acquire() as connection, connection.transaction():
                await outbox.enqueue(connection, _lead())

            relay.wake()

            await eventually(lambda: _unsent(pool), until=lambda n: n == 0, timeout=5, what="woken")
    finally:
        await pool.close()


async def test_the_service_runs_relay_and_consumer_off_the_request_loop(
    database_url: str, topics: CommonSettings, tmp_path: Path
) -> None:
    (tmp_path / "0001_effects.sql").write_text("CREATE TABLE effects (event_id uuid);")
    seen_on: list[threading.Thread] = []

    async def on_lead(connection: asyncpg.Connection, event: Any) -> None:
        seen_on.append(threading.current_thread())
        await connection.execute("INSERT INTO effects VALUES ($1)", event.id)

    runtimes: list[Runtime] = []
    app = _app(database_url, topics, tmp_path, on_lead, runtimes)
    async with LifespanManager(app) as manager:
        (runtime,) = runtimes
        async with runtime.pool.acquire() as connection:
            async with connection.transaction():
                await outbox.enqueue(connection, _lead())
            await outbox.wake_relay(connection)

        await eventually(lambda: _effects(runtime.pool), until=lambda n: n == 1, timeout=20)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            healthz = await client.get("/healthz")

    assert seen_on
    assert seen_on[0] is not threading.current_thread()
    assert healthz.status_code == 200
    assert runtime.workers is not None
    assert not runtime.workers.stopped


def _app(
    database_url: str,
    settings: CommonSettings,
    migrations: Path,
    on_lead: Any,
    runtimes: list[Runtime],
) -> FastAPI:
    from funnel_common.events import LEADS_TOPIC, LeadCaptured

    metrics = PlatformMetrics("workers-test")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_runtime(
            service="workers-test", schema=SCHEMA, dsn=database_url, migrations=migrations,
            settings=settings, metrics=metrics, publishes=True,
            consumes=ConsumerSpec("workers-test", [LEADS_TOPIC], {LeadCaptured: on_lead}),
        ) as runtime:  # fmt: skip
            runtimes.append(runtime)
            yield {"runtime": runtime}

    return build_app(
        service="workers-test", title="workers test", settings=settings,
        metrics=metrics, lifespan=lifespan, routers=[],
    )  # fmt: skip


async def _value(value: Any) -> Any:
    return value


async def _unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def _effects(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM effects")
    return count
