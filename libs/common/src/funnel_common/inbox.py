"""The idempotent inbox: an event id recorded in the same transaction as its effect.

The live consumer and ``funnel replay`` write the same rows, so a replay's inbox is
exactly what the live consumer would have written."""

from __future__ import annotations

from uuid import UUID

import asyncpg

InboxRow = tuple[UUID, str, str, int, int]
"""(event id, event type, topic, partition, offset)."""


async def record_inbox(connection: asyncpg.Connection, row: InboxRow) -> bool:
    """Records one event; False when it was already there (a duplicate)."""
    fresh = await connection.fetchval(
        """INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true""",
        *row,
    )
    return bool(fresh)


async def record_inbox_many(connection: asyncpg.Connection, rows: list[InboxRow]) -> list[UUID]:
    """Records many events in one statement; the ids that were not there before. The
    first row of an id wins, later rows of it are duplicates like ids already there."""
    if not rows:
        return []
    event_ids, event_types, topics, partitions, offsets = zip(*rows, strict=True)
    inserted: list[asyncpg.Record] = await connection.fetch(
        """INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::integer[], $5::bigint[])
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
        list(event_ids),
        list(event_types),
        list(topics),
        list(partitions),
        list(offsets),
    )
    return [row["event_id"] for row in inserted]
