"""All SQL of metrics, one function per query. Functions never commit."""

from __future__ import annotations

import asyncpg


async def count_stage(
    connection: asyncpg.Connection, *, stage: str, source: str, campaign: str | None
) -> None:
    await connection.execute(
        """INSERT INTO stage_counts (stage, source, campaign, count) VALUES ($1, $2, $3, 1)
           ON CONFLICT (stage, source, campaign) DO UPDATE SET count = stage_counts.count + 1""",
        stage,
        source,
        campaign or "",
    )


async def stage_totals(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT stage, sum(count)::bigint AS total FROM stage_counts GROUP BY stage"
    )
    return {row["stage"]: row["total"] for row in rows}
