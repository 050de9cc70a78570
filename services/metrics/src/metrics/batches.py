"""Applying retained events to a schema in batches, for ``funnel replay``.

One event at a time costs four round trips (savepoint, inbox row, the facts' write,
release), about a millisecond per event. Here a batch costs one inbox statement and one
statement per kind of fact (``metrics.handlers.record`` takes any number of facts, the
live consumer gives it one event's), and is prepared (decoded, its facts made) while
PostgreSQL writes the one before, with the same outcome as applying the events one by
one:

- an event's facts are made by the same pure functions as live (``metrics.facts``); an
  event they refuse (a foreign currency) is skipped, as the live consumer parks it in
  the DLQ instead of recording it;
- the inbox decides which events are fresh exactly as one by one: the first of an id
  (in topic order) is applied, later ones and ids already recorded are duplicates;
- a value PostgreSQL refuses rolls the batch back to its savepoint and applies that
  batch one event at a time, each in its own savepoint, which skips exactly the refused
  events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common.events import Envelope, EventDecodeError, decode_event
from funnel_common.inbox import record_inbox, record_inbox_many
from metrics.facts import Fact, FactsOf
from metrics.handlers import record

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


@dataclass(frozen=True)
class Decoded:
    record: Any
    event: Envelope
    facts: list[Fact]


@dataclass
class Prepared:
    """A batch decoded and its facts made: CPU work only, no I/O, so the next batch is
    prepared while PostgreSQL writes the previous one."""

    read: int
    skipped: int
    """Undecodable, or refused by its facts' function."""
    decoded: list[Decoded]


_YIELD_EVERY = 64
"""Events prepared between two chances for the writer to send its next statement."""


async def prepare(table: dict[type[Envelope], FactsOf], records: list[Any]) -> Prepared:
    """Decode ``records`` (Kafka records, in topic order) and make their facts.

    The caller runs it while the previous batch is being written. Decoding is CPU work
    and the writer sends a statement per kind of fact: without a pause, each statement
    PostgreSQL finished would wait for the whole batch to be decoded, and PostgreSQL
    and Python would take turns instead of working together."""
    decoded: list[Decoded] = []
    skipped = 0
    for position, kafka_record in enumerate(records):
        if position % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            event = decode_event(kafka_record.value)
        except EventDecodeError:
            skipped += 1
            continue
        facts_of = table.get(type(event))
        if facts_of is None:
            continue  # not an event metrics hears, as live
        try:
            decoded.append(Decoded(kafka_record, event, facts_of(event)))
        except ValueError as error:
            skipped += 1
            log.warning(
                "replay skipped an event metrics refuses",
                extra={"event_type": event.type, "event_id": str(event.id), "error": repr(error)},
            )
    return Prepared(len(records), skipped, decoded)


async def apply_prepared(connection: asyncpg.Connection, batch: Prepared) -> Tally:
    """Write ``batch`` inside the caller's transaction; the same outcome as one by one."""
    tally = Tally(read=batch.read, skipped=batch.skipped)
    try:
        async with connection.transaction():
            fresh = await _write_together(connection, batch.decoded)
    except asyncpg.PostgresError as error:
        log.info("replay batch applied one by one", extra={"reason": type(error).__name__})
    else:
        tally.applied += fresh
        tally.duplicates += len(batch.decoded) - fresh
        return tally
    for item in batch.decoded:
        outcome = await apply_one(connection, item)
        tally.applied += outcome == "applied"
        tally.duplicates += outcome == "duplicate"
        tally.skipped += outcome == "skipped"
    return tally


async def _write_together(connection: asyncpg.Connection, decoded: list[Decoded]) -> int:
    first: dict[UUID, Decoded] = {}
    for item in decoded:
        first.setdefault(item.event.id, item)
    inserted = await record_inbox_many(
        connection,
        [
            (item.event.id, item.event.type, item.record.topic, item.record.partition,
             item.record.offset)
            for item in first.values()
        ],
    )  # fmt: skip
    await record(
        connection, [fact for event_id in inserted for fact in first[event_id].facts], bulk=True
    )
    return len(inserted)


async def apply_one(connection: asyncpg.Connection, item: Decoded) -> str:
    """One event in its own savepoint: "applied", "duplicate" or "skipped" (refused)."""
    event, kafka = item.event, item.record
    try:
        async with connection.transaction():
            fresh = await record_inbox(
                connection, (event.id, event.type, kafka.topic, kafka.partition, kafka.offset)
            )
            if fresh:
                await record(connection, item.facts)
    except asyncpg.PostgresError as error:
        log.warning(
            "replay skipped an event PostgreSQL refused",
            extra={"event_type": event.type, "event_id": str(event.id), "error": repr(error)},
        )
        return "skipped"
    return "applied" if fresh else "duplicate"
