"""Rebuild the projections from the retained events, check them, and switch over.

1. Migrate a fresh schema ``metrics_replay_<time>`` and note each partition's end.
2. Read every retained event of the metrics topics from the beginning up to those
   ends and apply it with the live handlers and the same inbox (so duplicates on the
   topics are skipped exactly as live). An event whose handler fails (e.g. a foreign
   currency) is skipped, as the live consumer parks it in the DLQ.
3. Switch, in ONE transaction: lock the live inbox (the live consumer waits, readers
   go on), catch up with whatever arrived meanwhile, carry unpublished outbox rows
   over, check that every event the live projections applied was replayed and compare
   the figures, then rename ``metrics`` to ``metrics_retired_<time>`` and the fresh
   schema to ``metrics``. The services keep running: their connections name the
   schema in ``search_path``, so the next statement (or the one waiting on the lock)
   resolves to the rebuilt tables.

If a check fails nothing is switched and the fresh schema is left for inspection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_common.consumer import Handler
from funnel_common.db import create_pool, migrate_dsn
from funnel_common.events import Envelope, decode_event
from funnel_common.types import utc_now
from metrics import report, store
from metrics.app import MIGRATIONS, SCHEMA
from metrics.batches import Prepared, Tally, apply_prepared, prepare
from metrics.handlers import TOPICS, handlers
from metrics.periods import exported_periods
from metrics.settings import MetricsSettings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (events read, events to read) as the replay goes."""


@dataclass
class ReplayResult:
    rebuilt_schema: str
    retired_schema: str | None = None
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    missing: int = 0
    differences: list[str] = field(default_factory=list)
    switched: bool = False
    seconds: float = 0.0
    """From the fresh schema's migration to the end of the switch."""


class _Reader:
    """Reads the metrics topics partition by partition, up to given offsets."""

    def __init__(self, settings: MetricsSettings) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.common.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.common.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(settings.common.kafka_request_timeout_ms, 40_000),
        )
        self.partitions: list[TopicPartition] = []
        # An empty poll waits this long before the high watermarks are judged; a few
        # fetch waits are enough for fresh ones, and it is paid at the end of each phase.
        self._poll_ms = max(100, 5 * settings.common.kafka_fetch_max_wait_ms)

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()  # metadata of every topic, partitions included
        for name in TOPICS:
            topic = self._settings.common.topic(name)
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ()):
                self.partitions.append(TopicPartition(topic, partition))
        self._consumer.assign(self.partitions)
        await self._consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def estimate(self) -> int:
        """Events on the topics, for the progress bar: exact on Apache Kafka; Tansu counts
        a batch of records as one in ListOffsets, so its estimate runs low."""
        ends = await self._consumer.end_offsets(self.partitions)
        return int(sum(ends.values()))

    async def read_available(self) -> list[Any]:
        """The next records; empty once caught up with every partition.

        "Caught up" is judged by the high watermark each fetch returns (right on every
        broker), not by ListOffsets (wrong on Tansu for batches).
        """
        empty_polls = 0
        while True:
            batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
            records = [record for batch in batches.values() for record in batch]
            if records:
                return records
            caught_up = True
            for partition in self.partitions:
                highwater = self._consumer.highwater(partition)
                if highwater is None or await self._consumer.position(partition) < highwater:
                    caught_up = False
            empty_polls += 1
            if caught_up or empty_polls >= 5:
                return []


def _count(result: ReplayResult, tally: Tally) -> None:
    result.read += tally.read
    result.applied += tally.applied
    result.duplicates += tally.duplicates
    result.skipped += tally.skipped


async def _read_ahead(
    reader: _Reader,
    table: dict[type[Envelope], Handler],
    prepared: asyncio.Queue[Prepared | None],
) -> None:
    """Read and prepare batches into ``prepared`` (None at the end); it runs while the
    batch before is being written, and holds at most one batch more."""
    while batch := await reader.read_available():
        await prepared.put(await prepare(table, batch))
    await prepared.put(None)


async def _apply_all(
    connection: asyncpg.Connection,
    reader: _Reader,
    table: dict[type[Envelope], Handler],
    result: ReplayResult,
    progress: Progress | None = None,
    total: int = 0,
) -> None:
    """Every event the reader has until it is caught up, a transaction per batch (or, in
    a transaction, the caller's savepoints)."""
    prepared: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=1)
    reading = asyncio.create_task(_read_ahead(reader, table, prepared))
    try:
        while (batch := await prepared.get()) is not None:
            async with connection.transaction():
                _count(result, await apply_prepared(connection, batch))
            if progress is not None:
                progress(result.read, max(total, result.read))
        await reading
    finally:
        reading.cancel()


async def _apply_outbox_row(
    connection: asyncpg.Connection, table: dict[type[Envelope], Handler], row: Any
) -> None:
    """An unpublished event of ours (a target just set) counts in the rebuilt schema too."""
    await store.copy_outbox_row(connection, row)
    event = decode_event(row["payload"])
    handler = table.get(type(event))
    fresh = await store.record_inbox(
        connection,
        event_id=event.id,
        event_type=event.type,
        topic=row["topic"],
        partition=-1,
        offset=-1,
    )
    if fresh and handler is not None:
        await handler(connection, event)


async def replay(
    settings: MetricsSettings,
    *,
    progress: Progress | None = None,
    switch: bool = True,
    accept_differences: bool = False,
) -> ReplayResult:
    """Rebuild, check and (unless told not to) switch over; see the module docstring."""
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    result = ReplayResult(rebuilt_schema=f"{SCHEMA}_replay_{stamp}")
    table = handlers(settings.common.reporting_currency)
    await migrate_dsn(settings.database_url, schema=result.rebuilt_schema, directory=MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=result.rebuilt_schema, max_size=2)
    live_pool = await create_pool(settings.database_url, schema=SCHEMA, max_size=2)
    reader = _Reader(settings)
    try:
        await reader.start()
        total = await reader.estimate()
        async with pool.acquire() as connection:
            await _apply_all(connection, reader, table, result, progress, total)
            async with connection.transaction():
                await _switch(
                    connection,
                    live_pool,
                    reader,
                    table,
                    settings,
                    result,
                    switch,
                    accept_differences,
                    stamp,
                )
    finally:
        await reader.stop()
        await pool.close()
        await live_pool.close()
    result.seconds = time.perf_counter() - started
    return result


async def _switch(
    connection: asyncpg.Connection,
    live_pool: asyncpg.Pool,
    reader: _Reader,
    table: dict[type[Envelope], Handler],
    settings: MetricsSettings,
    result: ReplayResult,
    switch: bool,
    accept_differences: bool,
    stamp: str,
) -> None:
    live_exists = await store.schema_exists(connection, SCHEMA)
    if live_exists:
        await store.lock_inbox(connection, SCHEMA)
    # Whatever reached the topics while we were reading (the live consumer is held).
    await _apply_all(connection, reader, table, result)
    if not live_exists:
        result.switched = switch
        if switch:
            await store.rename_schema(connection, result.rebuilt_schema, SCHEMA)
        return
    for row in await store.unsent_outbox(connection, SCHEMA):
        await _apply_outbox_row(connection, table, row)
    result.missing = await store.events_missing_from(
        connection, live=SCHEMA, rebuilt=result.rebuilt_schema
    )
    periods = exported_periods(
        utc_now(),
        settings.common.reporting_timezone,
        before=settings.periods_before,
        after=settings.periods_after,
    )
    rebuilt = await report.read_snapshot(connection, periods, settings)
    async with live_pool.acquire() as live:
        current = await report.read_snapshot(live, periods, settings)
    result.differences = _differences(current, rebuilt)
    if result.missing or (result.differences and not accept_differences) or not switch:
        return
    result.retired_schema = f"{SCHEMA}_retired_{stamp}"
    await store.rename_schema(connection, SCHEMA, result.retired_schema)
    await store.rename_schema(connection, result.rebuilt_schema, SCHEMA)
    result.switched = True


def _differences(live: Any, rebuilt: Any, path: str = "") -> list[str]:
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        return [
            difference
            for key in sorted(set(live) | set(rebuilt), key=str)
            for difference in _differences(live.get(key), rebuilt.get(key), f"{path}.{key}")
        ]
    if live != rebuilt:
        return [f"{path}: live {live!r}, rebuilt {rebuilt!r}"]
    return []
