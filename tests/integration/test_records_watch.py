"""The relay's watch for lost records: on the volatile embedded broker it counts what
the broker holds on every topic it is asked about; on Apache Kafka it never runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from funnel_common import outbox
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.kafka import RecordsWatch, new_producer
from funnel_common.outbox import OutboxRelay
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from tests.helpers import eventually
from tests.integration.test_outbox import _lead


async def test_held_counts_each_topic_not_only_the_first_one_asked(
    topics: CommonSettings,
) -> None:
    producer = new_producer(topics)
    await producer.start()
    try:
        for topic, records in (("funnel.leads", 2), ("funnel.deals", 3), ("funnel.accounts", 1)):
            for number in range(records):
                await producer.send_and_wait(topics.topic(topic), b"x", key=str(number).encode())
    finally:
        await producer.stop()
    watch = RecordsWatch(topics)

    try:
        held = [await watch.held(topic) for topic in ("funnel.leads", "funnel.deals")]
        held.append(await watch.held("funnel.accounts"))
    finally:
        await watch.close()

    # A topic the watch's consumer had no metadata for used to count as empty, so the
    # relay republished it every few seconds, forever.
    assert held == [2, 3, 1]


@pytest.fixture
async def pool(database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    await migrate_dsn(database_url, schema="svc", directory=tmp_path)
    pool = await create_pool(database_url, schema="svc")
    yield pool
    await pool.close()


@pytest.mark.both_brokers
async def test_the_relay_watches_only_a_volatile_broker(
    pool: asyncpg.Pool,
    database_url: str,
    topics: CommonSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    held = RecordsWatch.held

    async def counting(watch: RecordsWatch, topic: str) -> int | None:
        asked.append(topic)
        return await held(watch, topic)

    rounds: list[float] = []
    drain = OutboxRelay._drain

    async def counted(relay: OutboxRelay, connection: asyncpg.Connection) -> None:
        await drain(relay, connection)
        rounds.append(time.monotonic())

    monkeypatch.setattr(RecordsWatch, "held", counting)
    monkeypatch.setattr(OutboxRelay, "_drain", counted)
    polling = topics.model_copy(update={"outbox_poll_interval_seconds": 0.2})
    relay = OutboxRelay(
        dsn=database_url, schema="svc", settings=polling, metrics=PlatformMetrics("test")
    )
    task = asyncio.create_task(relay.run())
    try:
        async with outbox.transaction(pool) as connection:
            await outbox.enqueue(connection, _lead())
        await eventually(
            lambda: pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
            until=lambda unsent: unsent == 0,
            what="the event published",
        )
        published = len(rounds)

        # Rounds of the relay over more than two of the watch's periods (a second).
        async def watched_long_enough() -> bool:
            return len(rounds) > published and rounds[-1] - rounds[published] > 2.5

        await eventually(watched_long_enough, timeout=20, what="relay rounds over 2.5 s")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    if topics.kafka_volatile_broker:
        assert "funnel.leads" in asked
    else:
        # Apache Kafka never loses acknowledged records: no watch, no request.
        assert asked == []
