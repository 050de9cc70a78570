"""The SQL of marketing's feedback list, and of the deal outcomes it shows. Functions
never commit (``store.py`` holds the rest of handoff's SQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common.deals import Deal, DealEvent
from handoff.feedback import Filters

# --- deals (funnel.deals, applied by the worker's consumer) ----------------------------


async def record_deal_event(
    connection: asyncpg.Connection, event_id: UUID, event: DealEvent
) -> None:
    await connection.execute(
        """INSERT INTO deal_events (event_id, deal_id, kind, occurred_at, delivery_id,
               fields_set, lead_id, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT (event_id) DO NOTHING""",
        event_id,
        event.deal_id,
        event.kind,
        event.occurred_at,
        event.delivery_id,
        None if event.fields_set is None else list(event.fields_set),
        event.lead_id,
        event.source,
        event.campaign,
        event.amount_cents,
        event.stage,
        event.expected_close_date,
        event.closed_on,
        event.lost_reason,
    )


async def deal_events(connection: asyncpg.Connection, deal_id: str) -> list[DealEvent]:
    """Every event of a deal, in no particular order (the fold orders them)."""
    rows = await connection.fetch(
        """SELECT deal_id, kind, occurred_at, delivery_id, fields_set, lead_id, source,
                  campaign, amount_cents, stage, expected_close_date, closed_on, lost_reason
           FROM deal_events WHERE deal_id = $1""",
        deal_id,
    )
    return [
        DealEvent(
            **{
                **dict(row),
                "fields_set": None if row["fields_set"] is None else tuple(row["fields_set"]),
            }
        )
        for row in rows
    ]


async def save_deal(connection: asyncpg.Connection, deal: Deal) -> None:
    """A deal's folded state, replacing what was there."""
    await connection.execute(
        """INSERT INTO deals (deal_id, lead_id, status, amount_cents, closed_on, lost_reason)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (deal_id) DO UPDATE SET
               lead_id = EXCLUDED.lead_id, status = EXCLUDED.status,
               amount_cents = EXCLUDED.amount_cents, closed_on = EXCLUDED.closed_on,
               lost_reason = EXCLUDED.lost_reason""",
        deal.deal_id,
        deal.lead_id,
        deal.status,
        deal.amount_cents,
        deal.closed_on,
        deal.lost_reason,
    )


# --- the feedback list -----------------------------------------------------------------
# One row per handoff that sales sent back, that breached its SLA, or whose lead's deals
# were won or lost. A lead's deals: won if any was won (their value and latest close),
# else lost if every one was lost; open deals say nothing yet. `at` is when the feedback
# happened; a close date counts from midnight in the reporting time zone ($1).

_ITEMS = """
WITH item AS (
    SELECT h.handoff_id, h.lead_id, h.team_id, h.status, h.form_type, h.attribution,
           h.score, h.score_reasons, h.profile ->> 'company' AS company,
           h.decided_at, h.decided_by, l.form_id, l.captured_at,
           coalesce(breach.count, 0) AS breaches, breach.first_at AS first_breached_at,
           breach.first_rep, rejection.reason, rejection.note, rejection.decided_by AS rejected_by,
           deal.outcome AS deal_outcome, deal.value_cents AS deal_value_cents,
           deal.closed_on AS deal_closed_on
    FROM handoffs h
    LEFT JOIN leads l ON l.lead_id = h.lead_id
    LEFT JOIN LATERAL (
        SELECT count(*) AS count, min(breached_at) AS first_at,
               (array_agg(rep_id ORDER BY breached_at, id))[1] AS first_rep
        FROM sla_breaches b WHERE b.handoff_id = h.handoff_id) breach ON true
    LEFT JOIN LATERAL (
        SELECT reason, note, decided_by FROM decisions d
        WHERE d.handoff_id = h.handoff_id AND d.outcome = 'rejected'
        ORDER BY d.id DESC LIMIT 1) rejection ON h.status = 'rejected'
    LEFT JOIN LATERAL (
        SELECT CASE WHEN bool_or(status = 'won') THEN 'won'
                    WHEN bool_and(status = 'lost') THEN 'lost' END AS outcome,
               CASE WHEN bool_or(status = 'won')
                    THEN sum(amount_cents) FILTER (WHERE status = 'won')
                    ELSE sum(amount_cents) FILTER (WHERE status = 'lost') END AS value_cents,
               CASE WHEN bool_or(status = 'won')
                    THEN max(closed_on) FILTER (WHERE status = 'won')
                    ELSE max(closed_on) FILTER (WHERE status = 'lost') END AS closed_on
        FROM deals WHERE deals.lead_id = h.lead_id) deal ON true
    WHERE ($2::text IS NULL OR h.attribution ->> 'source' = $2)
      AND ($3::text IS NULL OR h.attribution ->> 'campaign' = $3)
      AND ($4::text IS NULL OR l.form_id = $4)
      AND ($5::text IS NULL OR h.team_id = $5)
), judged AS (
    SELECT item.*,
           CASE WHEN status = 'rejected' THEN 'rejected'
                WHEN deal_outcome IS NOT NULL THEN deal_outcome
                ELSE 'breached' END AS outcome,
           CASE WHEN status = 'rejected' THEN decided_at
                WHEN deal_outcome IS NOT NULL THEN (deal_closed_on::timestamp AT TIME ZONE $1)
                ELSE first_breached_at END AS at,
           CASE WHEN status = 'rejected' THEN rejected_by
                WHEN deal_outcome IS NOT NULL THEN decided_by
                ELSE first_rep END AS rep_id
    FROM item
    WHERE status = 'rejected' OR breaches > 0 OR deal_outcome IS NOT NULL
)
SELECT * FROM judged
WHERE ($6::timestamptz IS NULL OR at >= $6)
  AND ($7::timestamptz IS NULL OR at < $7)
  AND ($8::text IS NULL OR reason = $8)
  AND ($9::text IS NULL OR outcome = $9
       OR ($9 = 'breached' AND breaches > 0))
"""


def _arguments(timezone: str, filters: Filters) -> list[Any]:
    return [
        timezone,
        filters.source,
        filters.campaign,
        filters.form,
        filters.team,
        filters.start,
        filters.end,
        filters.reason,
        filters.outcome,
    ]


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    found["attribution"] = json.loads(row["attribution"])
    found["score_reasons"] = json.loads(row["score_reasons"])
    return found


async def feedback_page(
    connection: asyncpg.Connection, filters: Filters, *, timezone: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One page of the list, newest first."""
    rows = await connection.fetch(
        f"{_ITEMS} ORDER BY at DESC, handoff_id DESC LIMIT $10 OFFSET $11",
        *_arguments(timezone, filters),
        limit,
        offset,
    )
    return [_decoded(row) for row in rows]


async def count_feedback(connection: asyncpg.Connection, filters: Filters, *, timezone: str) -> int:
    count: int = await connection.fetchval(
        f"SELECT count(*) FROM ({_ITEMS}) AS listed", *_arguments(timezone, filters)
    )
    return count


async def each_feedback(
    connection: asyncpg.Connection, filters: Filters, *, timezone: str, limit: int
) -> AsyncIterator[dict[str, Any]]:
    """The whole list, newest first, at most ``limit`` rows, read through one cursor (the
    caller holds the connection in a transaction while it reads)."""
    cursor = connection.cursor(
        f"{_ITEMS} ORDER BY at DESC, handoff_id DESC LIMIT $10",
        *_arguments(timezone, filters),
        limit,
        prefetch=500,
    )
    async for row in cursor:
        yield _decoded(row)


async def filter_choices(connection: asyncpg.Connection) -> dict[str, Sequence[str]]:
    """The teams and forms the page's filters offer."""
    teams = await connection.fetch("SELECT DISTINCT team_id FROM handoffs ORDER BY 1")
    forms = await connection.fetch(
        "SELECT DISTINCT form_id FROM leads WHERE form_id IS NOT NULL ORDER BY 1"
    )
    return {
        "teams": [row["team_id"] for row in teams],
        "forms": [row["form_id"] for row in forms],
    }
