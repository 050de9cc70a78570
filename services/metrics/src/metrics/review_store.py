"""The SQL of the review pack: its weekly timer rows, their deliveries, and what a pack
reads beside the figures (missed deadlines, example notes). Functions never commit;
``store.py`` holds the figures' SQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from funnel_common.periods import Week, parse_week
from metrics.review import MissedDeadline, ReviewPack

Channel = Literal["email", "slack"]

# --- timers: one row per ISO week ------------------------------------------------------


async def latest_week(connection: asyncpg.Connection) -> Week | None:
    """The latest week with a timer row (ISO week names sort as the weeks do)."""
    found: str | None = await connection.fetchval("SELECT max(week) FROM review_weeks")
    return None if found is None else parse_week(found)


async def schedule(connection: asyncpg.Connection, weeks: Sequence[tuple[Week, datetime]]) -> None:
    """Timer rows for these weeks (a row already there is kept as it is)."""
    await connection.executemany(
        "INSERT INTO review_weeks (week, due_at) VALUES ($1, $2) ON CONFLICT (week) DO NOTHING",
        [(str(week), due_at) for week, due_at in weeks],
    )


async def claim_due(connection: asyncpg.Connection, now: datetime) -> asyncpg.Record | None:
    """The newest week due and not yet done, locked until the transaction ends; a row
    another replica holds is skipped, so a week is prepared once."""
    row: asyncpg.Record | None = await connection.fetchrow(
        """SELECT week, due_at FROM review_weeks
           WHERE state = 'scheduled' AND due_at <= $1
           ORDER BY due_at DESC LIMIT 1 FOR UPDATE SKIP LOCKED""",
        now,
    )
    return row


async def newer_due(connection: asyncpg.Connection, due_at: datetime, now: datetime) -> bool:
    """Whether a later week is due too (then the claimed one is skipped, not sent)."""
    found: bool = await connection.fetchval(
        """SELECT EXISTS (SELECT FROM review_weeks
                          WHERE state = 'scheduled' AND due_at > $1 AND due_at <= $2)""",
        due_at,
        now,
    )
    return found


async def skip(connection: asyncpg.Connection, week: str) -> None:
    await connection.execute("UPDATE review_weeks SET state = 'skipped' WHERE week = $1", week)


async def skip_older(connection: asyncpg.Connection, due_at: datetime) -> None:
    """Weeks missed before the one being sent: their pack would say what this one says."""
    await connection.execute(
        "UPDATE review_weeks SET state = 'skipped' WHERE state = 'scheduled' AND due_at < $1",
        due_at,
    )


async def save_pack(
    connection: asyncpg.Connection, pack: ReviewPack, *, prepared_at: datetime
) -> None:
    await connection.execute(
        """UPDATE review_weeks SET state = 'sent', prepared_at = $2, late = $3, pack = $4::jsonb
           WHERE week = $1""",
        pack.week,
        prepared_at,
        pack.late,
        pack.model_dump_json(),
    )


async def week_row(connection: asyncpg.Connection, week: Week) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT week, due_at, state, prepared_at, late, pack FROM review_weeks WHERE week = $1",
        str(week),
    )
    return row


async def pack_of(connection: asyncpg.Connection, week: Week) -> ReviewPack | None:
    text = await connection.fetchval(
        "SELECT pack FROM review_weeks WHERE week = $1 AND state = 'sent'", str(week)
    )
    return None if text is None else ReviewPack.model_validate_json(text)


async def previous_pack(connection: asyncpg.Connection, week: Week) -> ReviewPack | None:
    """The last pack sent for a week before ``week``."""
    text = await connection.fetchval(
        """SELECT pack FROM review_weeks WHERE state = 'sent' AND week < $1
           ORDER BY week DESC LIMIT 1""",
        str(week),
    )
    return None if text is None else ReviewPack.model_validate_json(text)


# --- deliveries: a durable queue per pack and channel -----------------------------------


async def enqueue_deliveries(
    connection: asyncpg.Connection, week: str, channels: Sequence[Channel]
) -> None:
    await connection.executemany(
        """INSERT INTO review_deliveries (week, channel) VALUES ($1, $2)
           ON CONFLICT (week, channel) DO NOTHING""",
        [(week, channel) for channel in channels],
    )


async def claim_deliveries(
    connection: asyncpg.Connection, *, now: datetime, lease: timedelta, limit: int
) -> list[asyncpg.Record]:
    """Deliveries due, leased: another replica will not pick them until the lease ends."""
    rows: list[asyncpg.Record] = await connection.fetch(
        """UPDATE review_deliveries SET attempts = attempts + 1,
               next_attempt_at = $1::timestamptz + $2::interval
           WHERE id IN (SELECT id FROM review_deliveries
                        WHERE delivered_at IS NULL AND failed_at IS NULL
                          AND next_attempt_at <= $1
                        ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING id, week, channel, attempts""",
        now,
        lease,
        limit,
    )
    return rows


async def mark_delivered(connection: asyncpg.Connection, delivery_id: int) -> None:
    await connection.execute(
        "UPDATE review_deliveries SET delivered_at = now(), last_error = NULL WHERE id = $1",
        delivery_id,
    )


async def mark_failed(
    connection: asyncpg.Connection, delivery_id: int, *, error: str, retry_at: datetime | None
) -> None:
    """The next attempt, or (``retry_at`` None) parked for good with its reason."""
    await connection.execute(
        """UPDATE review_deliveries SET last_error = $2,
               next_attempt_at = coalesce($3, next_attempt_at),
               failed_at = CASE WHEN $3::timestamptz IS NULL THEN now() END
           WHERE id = $1""",
        delivery_id,
        error[:500],
        retry_at,
    )


async def deliveries_of(connection: asyncpg.Connection, week: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        """SELECT channel, attempts, delivered_at, failed_at, last_error
           FROM review_deliveries WHERE week = $1 ORDER BY channel""",
        week,
    )
    return rows


# --- what a pack reads beside the figures ------------------------------------------------


async def missed_deadlines(
    connection: asyncpg.Connection, start: datetime, end: datetime, *, limit: int
) -> tuple[int, list[MissedDeadline]]:
    """Handoffs whose first response deadline fell in [start, end) and was missed: not
    decided by it (decided later, or not yet). How many, and the first ``limit``."""
    rows = await connection.fetch(
        """SELECT handoff_id, deadline.team, coalesce(lead.source, '') AS source,
                  nullif(coalesce(lead.campaign, ''), '') AS campaign, deadline.due_at,
                  coalesce(decision.outcome, 'open') AS outcome,
                  decision.occurred_at AS decided_at, count(*) OVER () AS total
           FROM handoff_deadlines AS deadline
           LEFT JOIN handoff_decisions AS decision USING (handoff_id)
           LEFT JOIN handoff_leads AS lead USING (handoff_id)
           WHERE deadline.due_at >= $1 AND deadline.due_at < $2
             AND (decision.occurred_at IS NULL OR decision.occurred_at > deadline.due_at)
           ORDER BY deadline.due_at, handoff_id
           LIMIT $3""",
        start,
        end,
        limit,
    )
    total = rows[0]["total"] if rows else 0
    return total, [
        MissedDeadline(**{key: row[key] for key in row.keys() if key != "total"}) for row in rows
    ]


async def example_notes(
    connection: asyncpg.Connection,
    reasons: Sequence[str],
    start: datetime,
    until: datetime,
    *,
    per_reason: int,
) -> dict[str, list[str]]:
    """The latest notes of rejections with each reason, decided in [start, until]: only a
    note of the decision that counts (a handoff's latest), read from the one table of
    notes (``rejection_notes``), so an erased note is shown nowhere."""
    rows = await connection.fetch(
        """SELECT reason, note FROM (
               SELECT decision.reason, note.note,
                      row_number() OVER (PARTITION BY decision.reason
                                         ORDER BY decision.occurred_at DESC,
                                                  decision.handoff_id) AS rank
               FROM handoff_decisions AS decision
               JOIN rejection_notes AS note
                 ON note.handoff_id = decision.handoff_id AND note.event_id = decision.event_id
               WHERE decision.outcome = 'rejected' AND decision.reason = ANY($1::text[])
                 AND decision.occurred_at >= $2 AND decision.occurred_at <= $3) AS ranked
           WHERE rank <= $4
           ORDER BY reason, rank""",
        list(reasons),
        start,
        until,
        per_reason,
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["reason"], []).append(row["note"])
    return found


# --- replay: the timers are metrics' own state, not a projection of events ---------------

_OWN_TABLES = ("review_weeks", "review_deliveries")
# Schema names come from code (metrics, metrics_replay_<time>), checked all the same.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema(name: str) -> str:
    if not _SCHEMA.match(name):
        raise ValueError(f"invalid schema name {name!r}")
    return name


async def lock_own_tables(connection: asyncpg.Connection, schema: str) -> None:
    """Hold the review worker still until the caller's transaction ends (it waits, and
    goes on against the tables that then carry the name)."""
    for table in _OWN_TABLES:
        await connection.execute(f"LOCK TABLE {_schema(schema)}.{table} IN EXCLUSIVE MODE")


async def carry_over(connection: asyncpg.Connection, *, live: str) -> None:
    """Copy the review tables of ``live`` into this connection's (rebuilt) schema."""
    for table in _OWN_TABLES:
        await connection.execute(f"INSERT INTO {table} SELECT * FROM {_schema(live)}.{table}")
    await connection.execute(
        """SELECT setval(pg_get_serial_sequence('review_deliveries', 'id'),
                         greatest((SELECT max(id) FROM review_deliveries), 1))"""
    )
