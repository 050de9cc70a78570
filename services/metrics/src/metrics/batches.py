"""Applying retained events to a schema in batches, for ``funnel replay``.

One event at a time costs four round trips (savepoint, inbox row, the handler's write,
release), about a millisecond per event: a replay ran below a thousand events/s. Here a
batch costs one inbox statement and one statement per kind of write (``metrics.store``
takes its values as column arrays, so calls concatenate), and is prepared (decoded,
handlers run) while PostgreSQL writes the one before, with the same outcome as applying
the events one by one with the live handlers:

- each handler runs as live, against a stand-in connection that keeps its statements
  instead of sending them; the handlers only write facts, and never read (see
  ``metrics.handlers``), so the order of the writes does not change the result;
- the inbox decides which events are fresh exactly as one by one: the first of an id
  (in topic order) is applied, later ones and ids already recorded are duplicates;
- anything unusual (an event its handler refuses, a value PostgreSQL refuses, a
  handler that reads) rolls the batch back to its savepoint and applies that batch one
  event at a time, each in its own savepoint, which skips exactly the refused events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast
from uuid import UUID

import asyncpg

from funnel_common.consumer import Handler
from funnel_common.events import Envelope, EventDecodeError, decode_event
from funnel_common.inbox import record_inbox, record_inbox_many

log = logging.getLogger(__name__)


@dataclass
class Tally:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0

    def add(self, other: Tally) -> None:
        self.read += other.read
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.skipped += other.skipped


class NotBatchable(Exception):
    """A handler did something other than write: the batch is applied one by one."""


@dataclass
class _Recorder:
    """Stands in for the connection while handlers run, keeping their writes."""

    writes: list[tuple[int, str, tuple[Any, ...]]] = field(default_factory=list)
    event: int = 0

    async def execute(self, query: str, *args: Any) -> str:
        self.writes.append((self.event, query, args))
        return ""

    def __getattr__(self, name: str) -> Any:
        raise NotBatchable(f"handler used connection.{name}")


@dataclass(frozen=True)
class _Decoded:
    record: Any
    event: Envelope
    handler: Handler


@dataclass
class Prepared:
    """A batch decoded and its handlers' writes recorded: CPU work only, no I/O, so the
    next batch is prepared while PostgreSQL writes the previous one."""

    read: int
    undecodable: int
    decoded: list[_Decoded]
    writes: list[tuple[int, str, tuple[Any, ...]]] | None
    """None when a handler refused an event or read: the batch goes one by one."""


_YIELD_EVERY = 64
"""Events decoded between two chances for the writer to send its next statement."""


async def prepare(table: dict[type[Envelope], Handler], records: list[Any]) -> Prepared:
    """Decode ``records`` (Kafka records, in topic order) and record their writes.

    The caller runs it while the previous batch is being written. Decoding is CPU work
    and the writer sends a statement per kind of write: without a pause, each statement
    PostgreSQL finished would wait for the whole batch to be decoded, and PostgreSQL
    and Python would take turns instead of working together."""
    decoded: list[_Decoded] = []
    undecodable = 0
    for position, record in enumerate(records):
        if position % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            event = decode_event(record.value)
        except EventDecodeError:
            undecodable += 1
            continue
        handler = table.get(type(event))
        if handler is not None:
            decoded.append(_Decoded(record, event, handler))
    recorder = _Recorder()
    try:
        for index, item in enumerate(decoded):
            if index % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            recorder.event = index
            await item.handler(cast(asyncpg.Connection, recorder), item.event)
    except (ValueError, NotBatchable) as error:
        log.info("replay batch applied one by one", extra={"reason": type(error).__name__})
        return Prepared(len(records), undecodable, decoded, None)
    return Prepared(len(records), undecodable, decoded, recorder.writes)


async def apply_prepared(connection: asyncpg.Connection, batch: Prepared) -> Tally:
    """Write ``batch`` inside the caller's transaction; the same outcome as one by one."""
    tally = Tally(read=batch.read, skipped=batch.undecodable)
    if batch.writes is not None:
        try:
            async with connection.transaction():
                fresh = await _write_together(connection, batch.decoded, batch.writes)
        except asyncpg.PostgresError as error:
            log.info("replay batch applied one by one", extra={"reason": type(error).__name__})
        else:
            tally.applied += fresh
            tally.duplicates += len(batch.decoded) - fresh
            return tally
    for item in batch.decoded:
        outcome = await apply_one(connection, item.record, item.event, item.handler)
        tally.applied += outcome == "applied"
        tally.duplicates += outcome == "duplicate"
        tally.skipped += outcome == "skipped"
    return tally


async def _write_together(
    connection: asyncpg.Connection,
    decoded: list[_Decoded],
    writes: list[tuple[int, str, tuple[Any, ...]]],
) -> int:
    first: dict[UUID, int] = {}
    for index, item in enumerate(decoded):
        first.setdefault(item.event.id, index)
    inserted = await record_inbox_many(
        connection,
        [
            (item.event.id, item.event.type, item.record.topic, item.record.partition,
             item.record.offset)
            for item in (decoded[index] for index in first.values())
        ],
    )  # fmt: skip
    fresh = {first[event_id] for event_id in inserted}
    statements: dict[str, list[tuple[Any, ...]]] = {}
    for index, query, args in writes:
        if index in fresh:
            statements.setdefault(query, []).append(args)
    for query, calls in statements.items():
        # Every call of a statement comes from the same store function: the first tells.
        if all(isinstance(arg, list) for arg in calls[0]):
            # Column arrays (see metrics.store): one set-based statement for all calls.
            columns = [list(chain.from_iterable(column)) for column in zip(*calls, strict=True)]
            await connection.execute(query, *columns)
        else:
            await connection.executemany(query, calls)
    return len(fresh)


async def apply_one(
    connection: asyncpg.Connection, record: Any, event: Envelope, handler: Handler
) -> str:
    """One event in its own savepoint: "applied", "duplicate" or "skipped" (refused)."""
    try:
        async with connection.transaction():
            fresh = await record_inbox(
                connection, (event.id, event.type, record.topic, record.partition, record.offset)
            )
            if fresh:
                await handler(connection, event)
    except (asyncpg.PostgresError, ValueError) as error:
        log.warning(
            "replay skipped an event its handler refused",
            extra={"event_type": event.type, "event_id": str(event.id), "error": repr(error)},
        )
        return "skipped"
    return "applied" if fresh else "duplicate"
