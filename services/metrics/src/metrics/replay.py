"""Rebuild the projections from the retained events, check them, and switch over.

1. Migrate a fresh schema ``metrics_replay_<time>`` and note each partition's end.
2. Read every retained event of the metrics topics from the beginning up to those
   ends and apply it with the live facts and writes (``metrics.handlers.record``) and
   the same inbox (so duplicates on the topics are skipped exactly as live). An event
   metrics refuses (e.g. a foreign currency) is skipped, as the live consumer parks it
   in the DLQ. Reading starts
   while the schema is migrated; a batch is decoded while the one before is written;
   the batches' commits do not wait for the disk (the schema is private and can be
   rebuilt), the switch's does. The indexes the writes do not need are dropped first
   and built once at the end (cheaper than keeping them up to date row by row); then
   the tables are analyzed, so the figures are read with plans made on real
   statistics from the first scrape on.
3. Switch, in ONE transaction: lock the live inbox (the live consumer waits, readers
   go on), catch up with whatever arrived meanwhile, carry unpublished outbox rows
   over, check that every event the live projections applied was replayed and compare
   the figures, carry the review pack's timers and deliveries over (metrics' own state,
   not rebuilt from events), then rename ``metrics`` to ``metrics_retired_<time>`` and
   the fresh schema to ``metrics``. The services keep running: their connections name the
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

from funnel_common.db import create_pool, migrate_dsn
from funnel_common.events import Envelope, decode_event
from funnel_common.inbox import record_inbox
from funnel_common.kafka import partitions_of
from funnel_common.periods import exported_periods
from funnel_common.types import utc_now
from metrics import facts, report, review_store, store
from metrics.batches import Prepared, Tally, apply_prepared, prepare
from metrics.handlers import TOPICS, record
from metrics.runtime import MIGRATIONS, SCHEMA
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
    """Reads the metrics topics partition by partition, up to ends probed beforehand."""

    def __init__(self, settings: MetricsSettings) -> None:
        self._settings = settings
        self._consumer = self._new_consumer()
        # Learns where each partition ends (see ``ends``); apart from the reading
        # consumer, whose fetches run ahead of what it hands out.
        self._prober = self._new_consumer()
        self.partitions: list[TopicPartition] = []
        # getmany waits at most this long for records not there yet; a few fetch waits.
        self._poll_ms = max(100, 5 * settings.common.kafka_fetch_max_wait_ms)

    def _new_consumer(self) -> AIOKafkaConsumer:
        common = self._settings.common
        return AIOKafkaConsumer(
            bootstrap_servers=common.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=common.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(common.kafka_request_timeout_ms, 40_000),
        )

    async def start(self) -> None:
        await asyncio.gather(self._consumer.start(), self._prober.start())
        self.partitions = await partitions_of(
            self._consumer, [self._settings.common.topic(name) for name in TOPICS]
        )
        self._consumer.assign(self.partitions)
        await self._consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await asyncio.gather(self._consumer.stop(), self._prober.stop())

    async def ends(self) -> dict[TopicPartition, int]:
        """Each partition's end now: the high watermark of a fetch sent after this call.

        Tansu answers ListOffsets(latest) with the last *batch's* base offset + 1, which
        undercounts multi-record batches (see ``funnel_common.kafka``), but is a place
        with records to fetch from; the fetch's high watermark is right on every broker.
        A fresh assignment forgets the high watermarks of earlier probes.
        """
        lower_bounds = await self._prober.end_offsets(self.partitions)
        self._prober.assign(self.partitions)
        for partition in self.partitions:
            self._prober.seek(partition, max(0, lower_bounds[partition] - 1))
        for _ in range(100):
            highwaters = {p: self._prober.highwater(p) for p in self.partitions}
            if all(highwater is not None for highwater in highwaters.values()):
                # No more fetches from the prober while the reader reads.
                self._prober.pause(*self.partitions)
                return {p: highwater or 0 for p, highwater in highwaters.items()}
            await self._prober.getmany(timeout_ms=self._poll_ms, max_records=1)
        raise TimeoutError("the broker told no high watermark of the metrics topics")

    async def read_until(self, ends: dict[TopicPartition, int]) -> list[Any]:
        """The next records; empty once every partition is read up to ``ends`` (records
        beyond them may come too, and are applied like the others)."""
        empty_polls = 0
        while not await self._reached(ends):
            batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
            records = [record for batch in batches.values() for record in batch]
            if records:
                return records
            empty_polls += 1
            if empty_polls >= 50:
                # The broker holds back records it said it has: stop here, and the
                # checks before the switch tell whether anything is missing.
                log.warning("replay stopped short of the topics' ends")
                return []
        return []

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        for partition, end in ends.items():
            if await self._consumer.position(partition) < end:
                return False
        return True


def _count(result: ReplayResult, tally: Tally) -> None:
    result.read += tally.read
    result.applied += tally.applied
    result.duplicates += tally.duplicates
    result.skipped += tally.skipped


_CHUNK = 2_500
"""Events prepared and written together. A fetch brings thousands; preparing them all at
once holds the event loop (it never suspends) while the batch before waits to be written,
so smaller pieces keep PostgreSQL busy sooner and more of the time."""


async def _read_ahead(
    reader: _Reader,
    table: dict[type[Envelope], facts.FactsOf],
    ends: dict[TopicPartition, int],
    prepared: asyncio.Queue[Prepared | None],
) -> None:
    """Read and prepare batches into ``prepared`` (None at the end); it runs while the
    batch before is being written, and holds at most one batch more."""
    while batch := await reader.read_until(ends):
        for start in range(0, len(batch), _CHUNK):
            await prepared.put(await prepare(table, batch[start : start + _CHUNK]))
    await prepared.put(None)


class _ReadAhead:
    """Reads and prepares batches up to ``ends`` in the background, from when it is made,
    so the first ones are ready by the time the writer is."""

    def __init__(
        self,
        reader: _Reader,
        table: dict[type[Envelope], facts.FactsOf],
        ends: dict[TopicPartition, int],
    ) -> None:
        self.total = sum(ends.values())
        self.prepared: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=1)
        self.task = asyncio.create_task(_read_ahead(reader, table, ends, self.prepared))


async def _apply_all(
    connection: asyncpg.Connection,
    reading: _ReadAhead,
    result: ReplayResult,
    progress: Progress | None = None,
) -> None:
    """Every event ``reading`` reads, a transaction per batch (or, in a transaction, the
    caller's savepoints)."""
    try:
        while (batch := await reading.prepared.get()) is not None:
            async with connection.transaction():
                _count(result, await apply_prepared(connection, batch))
            if progress is not None:
                progress(result.read, max(reading.total, result.read))
        await reading.task
    finally:
        reading.task.cancel()


async def _apply_outbox_row(
    connection: asyncpg.Connection, table: dict[type[Envelope], facts.FactsOf], row: Any
) -> None:
    """An unpublished event of ours (a target just set) counts in the rebuilt schema too."""
    await store.copy_outbox_row(connection, row)
    event = decode_event(row["payload"])
    facts_of = table.get(type(event))
    fresh = await record_inbox(connection, (event.id, event.type, row["topic"], -1, -1))
    if fresh and facts_of is not None:
        await record(connection, facts_of(event))


async def _start(reader: _Reader) -> dict[TopicPartition, int]:
    await reader.start()
    return await reader.ends()


async def _connect(settings: MetricsSettings, schema: str) -> tuple[asyncpg.Pool, asyncpg.Pool]:
    """Migrate the fresh ``schema``; a pool for it and one for the live schema."""
    await migrate_dsn(settings.database_url, schema=schema, directory=MIGRATIONS)
    rebuilt, live = await asyncio.gather(
        create_pool(settings.database_url, schema=schema, max_size=2),
        create_pool(settings.database_url, schema=SCHEMA, max_size=2),
    )
    return rebuilt, live


async def _close(connecting: asyncio.Task[tuple[asyncpg.Pool, asyncpg.Pool]]) -> None:
    """Close the pools ``connecting`` opened, if it got that far (else stop it)."""
    connecting.cancel()
    await asyncio.wait([connecting])
    if not connecting.cancelled() and connecting.exception() is None:
        for pool in connecting.result():
            await pool.close()


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
    table = facts.table(settings.common.reporting_currency)
    reader = _Reader(settings)
    # The fresh schema is created while the reader connects, learns the ends and
    # prepares the first batches.
    connecting = asyncio.create_task(_connect(settings, result.rebuilt_schema))
    reading: _ReadAhead | None = None
    try:
        reading = _ReadAhead(reader, table, await _start(reader))
        pool, live_pool = await connecting
        async with pool.acquire() as connection:
            await store.wait_for_durable_commits(connection, False)
            await store.create_staging_tables(connection)
            deferred = await store.drop_secondary_indexes(connection)
            await _apply_all(connection, reading, result, progress)
            await store.create_indexes(connection, deferred)
            await store.analyze(connection)
            await store.wait_for_durable_commits(connection, True)
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
        if reading is not None:
            reading.task.cancel()
            await asyncio.wait([reading.task])
        await reader.stop()
        await _close(connecting)
    result.seconds = time.perf_counter() - started
    return result


async def _switch(
    connection: asyncpg.Connection,
    live_pool: asyncpg.Pool,
    reader: _Reader,
    table: dict[type[Envelope], facts.FactsOf],
    settings: MetricsSettings,
    result: ReplayResult,
    switch: bool,
    accept_differences: bool,
    stamp: str,
) -> None:
    live_exists = await store.schema_exists(connection, SCHEMA)
    if live_exists:
        await store.lock_inbox(connection, SCHEMA)
    # Whatever reached the topics while we were reading (the live consumer is held, so
    # ends learnt now cover every event it applied).
    await _apply_all(connection, _ReadAhead(reader, table, await reader.ends()), result)
    if not live_exists:
        result.switched = switch
        if switch:
            await store.rename_schema(connection, result.rebuilt_schema, SCHEMA)
        return
    for row in await store.unsent_outbox(connection, SCHEMA):
        await _apply_outbox_row(connection, table, row)
    periods = exported_periods(
        utc_now(),
        settings.common.reporting_timezone,
        before=settings.periods_before,
        after=settings.periods_after,
    )
    now = utc_now()  # one instant for both sides: SLA deadlines "past by now"
    async with live_pool.acquire() as live:
        # The live figures are read meanwhile (over another connection; they are held).
        current_read = asyncio.ensure_future(report.read_snapshot(live, periods, settings, now=now))
        try:
            result.missing = await store.events_missing_from(
                connection, live=SCHEMA, rebuilt=result.rebuilt_schema
            )
            rebuilt = await report.read_snapshot(connection, periods, settings, now=now)
        finally:
            current = await current_read
    result.differences = _differences(current, rebuilt)
    if result.missing or (result.differences and not accept_differences) or not switch:
        return
    # The review pack's timers and deliveries are metrics' own state, not a projection
    # of events: they come along as they are.
    await review_store.lock_own_tables(connection, SCHEMA)
    await review_store.carry_over(connection, live=SCHEMA)
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
