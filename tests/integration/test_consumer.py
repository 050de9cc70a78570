from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_common.consumer import ConsumerRunner, Handler
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.events import (
    DLQ_TOPIC,
    LEADS_TOPIC,
    Attribution,
    Envelope,
    LeadCaptured,
    RecordDeadLettered,
    decode_record,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.outbox import OutboxRelay
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from tests.helpers import eventually
from tests.integration.kafka_helpers import read_topic

SCHEMA = "svc"

pytestmark = pytest.mark.both_brokers


GROUP = "group"


def _group(settings: CommonSettings) -> str:
    """The group as the broker knows it: namespaced by this test's topic prefix."""
    return f"{settings.kafka_topic_prefix}{GROUP}"


@pytest.fixture
async def pool(database_url: str, tmp_path) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    (tmp_path / "0001_effects.sql").write_text(
        "CREATE TABLE effects (lead_id uuid NOT NULL, note text);"
    )
    await migrate_dsn(database_url, schema=SCHEMA, directory=tmp_path)
    pool = await create_pool(database_url, schema=SCHEMA)
    yield pool
    await pool.close()


async def record_effect(connection: asyncpg.Connection, event: LeadCaptured) -> None:
    await connection.execute("INSERT INTO effects (lead_id) VALUES ($1)", event.data.lead_id)


def _lead(company: str = "Acme") -> LeadCaptured:
    lead_id = uuid4()
    return LeadCaptured.new(
        source="test",
        subject=str(lead_id),
        data={
            "lead_id": lead_id,
            "form_id": "default",
            "attribution": Attribution(source="webinar"),
            "profile": {"email": "ada@example.com", "company": company},
        },
    )


async def _publish(settings: CommonSettings, *values: bytes) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic(LEADS_TOPIC), value, key=b"k")
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def consuming(
    pool: asyncpg.Pool,
    settings: CommonSettings,
    handlers: dict[type[Envelope], Handler],
    *,
    relay_dsn: str | None = None,
) -> AsyncIterator[ConsumerRunner]:
    """The consumer running; with ``relay_dsn``, the schema's relay too, as in a worker
    (it publishes the dead letters the consumer keeps in the outbox)."""
    runner = ConsumerRunner(
        pool=pool,
        settings=settings,
        group_id=GROUP,
        topics=[LEADS_TOPIC],
        handlers=handlers,
        metrics=PlatformMetrics("test"),
    )
    tasks = [asyncio.create_task(runner.run())]
    if relay_dsn is not None:
        relay = OutboxRelay(
            dsn=relay_dsn, schema=SCHEMA, settings=settings, metrics=PlatformMetrics("test")
        )
        tasks.append(asyncio.create_task(relay.run()))
    try:
        yield runner
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def dead_letters(settings: CommonSettings, expect: int) -> list[dict[str, Any]]:
    """The dead letters' data on ``funnel.dlq``, each checked to be a catalogue event."""
    records = await read_topic(settings, DLQ_TOPIC, expect=expect, timeout=20)
    letters = [decode_record(r.value, r.headers) for r in records]
    assert all(isinstance(letter, RecordDeadLettered) for letter in letters)
    return [json.loads(letter.data.model_dump_json()) for letter in letters]


async def _effects(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM effects")
    return count


async def _committed_total(settings: CommonSettings) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=_group(settings)
    )
    await consumer.start()
    try:
        total = 0
        for partition in range(settings.kafka_topic_partitions):
            offset = await consumer.committed(
                TopicPartition(settings.topic(LEADS_TOPIC), partition)
            )
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def test_a_duplicated_event_is_applied_once(
    pool: asyncpg.Pool, topics: CommonSettings
) -> None:
    event = _lead()
    await _publish(topics, encode_event(event), encode_event(event), encode_event(_lead()))

    async with consuming(pool, topics, {LeadCaptured: record_effect}):
        await eventually(lambda: _committed_total(topics), until=lambda n: n == 3, what="commits")

    assert await _effects(pool) == 2
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 2


async def test_poison_goes_to_the_dlq_and_the_consumer_moves_on(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    good = _lead()
    await _publish(
        topics, b"\xff not json", b'{"type": "funnel.lead.captured.v1"}', encode_event(good)
    )

    async with consuming(pool, topics, {LeadCaptured: record_effect}, relay_dsn=database_url):
        await eventually(lambda: _effects(pool), until=lambda n: n == 1, what="good event applied")
        parked = await dead_letters(topics, expect=2)

    assert [p["kind"] for p in parked] == ["undecodable", "undecodable"]
    # In either order: on Apache Kafka the two keyless records may land on two partitions.
    originals = [p["original"] for p in parked]
    assert sorted(originals, key=str) == sorted(
        [{"base64": "/yBub3QganNvbg=="}, {"text": '{"type": "funnel.lead.captured.v1"}'}], key=str
    )
    assert all(
        p["group"] == _group(topics) and p["topic"] == topics.topic(LEADS_TOPIC) for p in parked
    )


async def test_a_handler_that_keeps_failing_parks_the_event_after_bounded_retries(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    attempts: list[str] = []

    async def fragile(connection: asyncpg.Connection, event: LeadCaptured) -> None:
        await record_effect(connection, event)
        if event.data.profile.company == "Cursed":
            attempts.append(str(event.id))
            raise ValueError("cannot apply this one")

    cursed, fine = _lead("Cursed"), _lead()
    await _publish(topics, encode_event(cursed), encode_event(fine))

    async with consuming(pool, topics, {LeadCaptured: fragile}, relay_dsn=database_url):
        await eventually(lambda: _effects(pool), until=lambda n: n == 1, what="fine event applied")
        parked = await dead_letters(topics, expect=1)

    assert len(parked) == 1
    assert parked[0]["kind"] == "handler_failed"
    assert "cannot apply this one" in parked[0]["error"]
    assert len(attempts) == topics.consumer_max_attempts
    # Each failed attempt rolled back its own effect and inbox row.
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", cursed.id) == 0


async def test_a_restarted_consumer_resumes_after_its_committed_offsets(
    pool: asyncpg.Pool, topics: CommonSettings
) -> None:
    seen: list[Any] = []

    async def remember(connection: asyncpg.Connection, event: LeadCaptured) -> None:
        seen.append(event.id)
        await record_effect(connection, event)

    await _publish(topics, encode_event(_lead()), encode_event(_lead()))
    async with consuming(pool, topics, {LeadCaptured: remember}):
        await eventually(lambda: _committed_total(topics), until=lambda n: n == 2, what="commits")

    await _publish(topics, encode_event(_lead()))
    async with consuming(pool, topics, {LeadCaptured: remember}):
        await eventually(lambda: _committed_total(topics), until=lambda n: n == 3, what="commits")

    assert len(seen) == 3 == len(set(seen))


async def test_a_fetch_across_partitions_is_applied_in_one_transaction(
    pool: asyncpg.Pool, topics: CommonSettings
) -> None:
    """Per partition, each fetch cost a transaction and an offset commit per partition,
    and the last partition's events waited for the others'."""
    transactions: list[int] = []

    async def remember(connection: asyncpg.Connection, event: LeadCaptured) -> None:
        transactions.append(await connection.fetchval("SELECT txid_current()"))
        await record_effect(connection, event)

    producer = new_producer(topics)
    await producer.start()
    try:
        for index in range(12):  # spread over the topic's partitions by key
            await producer.send_and_wait(
                topics.topic(LEADS_TOPIC), encode_event(_lead()), key=f"key-{index}".encode()
            )
    finally:
        await producer.stop()

    async with consuming(pool, topics, {LeadCaptured: remember}):
        await eventually(lambda: _committed_total(topics), until=lambda n: n == 12, what="commits")

    assert await _effects(pool) == 12
    assert len(set(transactions)) == 1
