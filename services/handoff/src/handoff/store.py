"""All SQL of handoff, one function per query. Functions never commit."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


async def record_lead(
    connection: asyncpg.Connection,
    *,
    lead_id: UUID,
    source: str,
    campaign: str | None,
    captured_at: datetime,
) -> None:
    await connection.execute(
        """INSERT INTO leads (lead_id, source, campaign, captured_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (lead_id) DO NOTHING""",
        lead_id,
        source,
        campaign,
        captured_at,
    )


async def count_leads(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM leads")
    return count
