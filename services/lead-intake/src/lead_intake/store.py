"""All SQL of lead-intake, one function per query. Functions never commit."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from funnel_common.events import LeadCapturedData


async def insert_lead(connection: asyncpg.Connection, lead: LeadCapturedData) -> None:
    await connection.execute(
        """INSERT INTO leads (lead_id, form_id, email, source, campaign, profile)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
        lead.lead_id,
        lead.form_id,
        lead.profile.email,
        lead.attribution.source,
        lead.attribution.campaign,
        lead.profile.model_dump_json(),
    )


async def count_leads(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM leads")
    return count


async def lead_exists(connection: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await connection.fetchval("SELECT true FROM leads WHERE lead_id = $1", lead_id))
