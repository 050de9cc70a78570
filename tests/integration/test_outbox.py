from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from funnel_common import outbox
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.events import LEADS_TOPIC, Attribution, LeadCaptured, decode_event
from funnel_common.outbox import OutboxRelay
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from tests.helpers import eventually
from tests.integration.kafka_helpers import read_topic

SCHEMA = "svc"

pytestmark = pytest.mark.both_brokers


def _lead(lead_id: object = None) -> LeadCaptured:
    lead_id = lead_id or uuid4()
    return LeadCaptured.new(
        source="test",
        subject=str(lead_id),
        data={
            "lead_id": lead_id,
            "form_id": "default",
            "attribution": Attribution(source="webinar"),
            "profile": {"email": "ada@example.com"},
        },
    )


@pytest.fixture
async def pool(database_url: str, tmp_path) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    await migrate_dsn(database_url, schema=SCHEMA, directory=tmp_path)
    pool = await create_pool(database_url, schema=SCHEMA)
    yield pool
    await pool.close()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _relay(database_url: str, settings: CommonSettings) -> OutboxRelay:
    return OutboxRelay(
        dsn=database_url, schema=SCHEMA, settings=settings, metrics=PlatformMetrics("test")
    )


async def _unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def test_enqueue_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(RuntimeError, match="transaction"):
            await outbox.enqueue(connection, _lead())


async def test_relay_publishes_in_order_and_marks_sent(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    lead_id = uuid4()
    events = [_lead(lead_id) for _ in range(5)]
    async with pool.acquire() as connection, connection.transaction():
        await outbox.enqueue(connection, *events)

    async with running(_relay(database_url, topics)):
        await eventually(lambda: _unsent(pool), until=lambda n: n == 0, what="outbox drained")

    records = await read_topic(topics, LEADS_TOPIC, expect=5)
    assert [decode_event(r.value).id for r in records] == [e.id for e in events]
    assert {r.key for r in records} == {str(lead_id).encode()}
    # The CloudEvents Kafka binding, structured mode.
    assert {dict(r.headers)["content-type"] for r in records} == {b"application/cloudevents+json"}


async def test_rolled_back_events_are_never_published(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    kept, dropped = _lead(), _lead()
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await outbox.enqueue(connection, dropped)
        await transaction.rollback()
    async with pool.acquire() as connection, connection.transaction():
        await outbox.enqueue(connection, kept)

    async with running(_relay(database_url, topics)):
        await eventually(lambda: _unsent(pool), until=lambda n: n == 0, what="outbox drained")

    records = await read_topic(topics, LEADS_TOPIC, expect=1)
    assert [decode_event(r.value).id for r in records] == [kept.id]


async def test_notify_wakes_the_relay_long_before_its_poll(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    slow_poll = topics.model_copy(update={"outbox_poll_interval_seconds": 60.0})
    relay = _relay(database_url, slow_poll)
    async with running(relay):
        await eventually(lambda: _async(relay.is_leader), what="relay leadership")

        async with outbox.transaction(pool) as connection:
            await outbox.enqueue(connection, _lead())

        await eventually(
            lambda: _unsent(pool), until=lambda n: n == 0, timeout=5, what="woken by NOTIFY"
        )


async def test_polling_picks_up_rows_whose_notification_was_lost(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    relay = _relay(database_url, topics.model_copy(update={"outbox_poll_interval_seconds": 0.2}))
    async with running(relay):
        await eventually(lambda: _async(relay.is_leader), what="relay leadership")
        event = _lead()
        # Inserted by hand, without the NOTIFY that enqueue sends.
        await pool.execute(
            """INSERT INTO outbox (event_id, event_type, topic, event_key, payload)
               VALUES ($1, $2, $3, $4, $5)""",
            event.id,
            event.type,
            event.topic,
            event.key,
            event.model_dump_json().encode(),
        )

        await eventually(lambda: _unsent(pool), until=lambda n: n == 0, what="found by polling")


async def test_two_relays_publish_each_event_exactly_once(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    first, second = _relay(database_url, topics), _relay(database_url, topics)
    async with running(first), running(second):
        for _ in range(20):
            async with pool.acquire() as connection, connection.transaction():
                await outbox.enqueue(connection, _lead())
        await eventually(lambda: _unsent(pool), until=lambda n: n == 0, what="outbox drained")
        leaders = [first.is_leader, second.is_leader]

    records = await read_topic(topics, LEADS_TOPIC, expect=20)
    assert sorted(leaders) == [False, True]
    assert len(records) == 20
    assert len({decode_event(r.value).id for r in records}) == 20


async def _async(value: bool) -> bool:
    return value


async def test_a_failed_wake_up_after_the_commit_does_not_fail_the_write(
    pool: asyncpg.Pool,
) -> None:
    """The write has committed: a wake-up lost to a dropped connection must not turn
    into an error (a 503 saying "nothing was stored"); the relay's poll covers it."""
    event = _lead()
    async with pool.acquire() as connection:
        async with connection.transaction():
            await outbox.enqueue(connection, event)
        # The server end goes away between the commit and the wake-up that
        # outbox.transaction sends after it.
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as other:
            assert await other.fetchval("SELECT pg_terminate_backend($1)", backend)
        await outbox._wake_relay(connection)
    async with pool.acquire() as connection:
        stored = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = $1", event.id
        )
    assert stored == 1


async def _rows(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox")
    return count


async def test_sent_rows_are_pruned_on_a_durable_broker_and_kept_on_a_volatile_one(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    """A long run, compressed: rows keep coming; with half a second of retention and
    deletes of 7 rows at a time, the table stays as small as the retention window."""
    settings = topics.model_copy(update={"outbox_retention_seconds": 0.5, "outbox_batch_size": 7})
    written, largest = 0, 0
    async with running(_relay(database_url, settings)):
        for _ in range(40):
            async with outbox.transaction(pool) as connection:
                await outbox.enqueue(connection, *(_lead() for _ in range(10)))
            written += 10
            largest = max(largest, await _rows(pool))
            await asyncio.sleep(0.1)  # the pace of the stream, not a wait for a condition
        await eventually(lambda: _unsent(pool), until=lambda n: n == 0, what="outbox drained")
        if topics.kafka_volatile_broker:
            remaining = await _rows(pool)
        else:
            remaining = await eventually(
                lambda: _rows(pool), until=lambda n: n == 0, timeout=15, what="rows pruned"
            )

    records = await read_topic(topics, LEADS_TOPIC, expect=written, timeout=20)
    assert len({decode_event(r.value).id for r in records}) == written
    if topics.kafka_volatile_broker:
        # Kept to publish again should the broker lose them.
        assert remaining == written
    else:
        # 4 s of writing at 100 rows/s: about a second's worth at most, never all of it.
        assert largest <= written // 2, largest
        assert remaining == 0
