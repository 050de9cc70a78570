"""All SQL of metrics, one function per query. Functions never commit.

Writes keep facts, keyed by entity, so redelivery and arrival order do not matter:
where an entity has several events, the row keeps the one with the latest (or, for
lead stages, the earliest) ``(event time, event id)``, the id breaking ties so the
outcome never depends on which event was processed first.

Each write takes its values as one-element arrays, one per column, read with
``unnest``: ``funnel replay`` concatenates the arrays of many events' calls of the same
statement and sends it once (``metrics.batches``). Where an entity appears more than
once, ``DISTINCT ON`` keeps the row the ``WHERE`` of the conflict would keep, so one
statement over many rows ends exactly where one statement per row would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

# --- writes (inside the consumer's transaction) ---------------------------------------


async def record_lead_stage(
    connection: asyncpg.Connection,
    *,
    stage: str,
    lead_id: UUID,
    source: str,
    campaign: str | None,
    occurred_at: datetime,
    event_id: UUID,
) -> None:
    await connection.execute(
        """INSERT INTO lead_stages (stage, lead_id, source, campaign, occurred_at, event_id)
           SELECT DISTINCT ON (stage, lead_id) *
           FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                       $6::uuid[]) AS fact(stage, lead_id, source, campaign, occurred_at, event_id)
           ORDER BY stage, lead_id, occurred_at, event_id
           ON CONFLICT (stage, lead_id) DO UPDATE
           SET source = excluded.source, campaign = excluded.campaign,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 < (lead_stages.occurred_at, lead_stages.event_id)""",
        [stage],
        [lead_id],
        [source],
        [campaign or ""],
        [occurred_at],
        [event_id],
    )


async def record_handoff_decision(
    connection: asyncpg.Connection,
    *,
    handoff_id: UUID,
    outcome: str,
    reason: str | None,
    source: str,
    campaign: str | None,
    within_sla: bool,
    business_seconds_to_decision: int,
    occurred_at: datetime,
    event_id: UUID,
) -> None:
    await connection.execute(
        """INSERT INTO handoff_decisions (handoff_id, outcome, reason, source, campaign,
               within_sla, business_seconds_to_decision, occurred_at, event_id)
           SELECT DISTINCT ON (handoff_id) *
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::boolean[], $7::bigint[], $8::timestamptz[], $9::uuid[])
                AS fact(handoff_id, outcome, reason, source, campaign, within_sla,
                        business_seconds_to_decision, occurred_at, event_id)
           ORDER BY handoff_id, occurred_at DESC, event_id DESC
           ON CONFLICT (handoff_id) DO UPDATE
           SET outcome = excluded.outcome, reason = excluded.reason, source = excluded.source,
               campaign = excluded.campaign, within_sla = excluded.within_sla,
               business_seconds_to_decision = excluded.business_seconds_to_decision,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 > (handoff_decisions.occurred_at, handoff_decisions.event_id)""",
        [handoff_id],
        [outcome],
        [reason],
        [source],
        [campaign or ""],
        [within_sla],
        [business_seconds_to_decision],
        [occurred_at],
        [event_id],
    )


async def record_sla_breach(
    connection: asyncpg.Connection, *, handoff_id: UUID, due_at: datetime
) -> None:
    await connection.execute(
        """INSERT INTO sla_breaches (handoff_id, due_at)
           SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
           ON CONFLICT DO NOTHING""",
        [handoff_id],
        [due_at],
    )


async def record_deal_state(
    connection: asyncpg.Connection,
    *,
    deal_id: str,
    status: str,
    source: str,
    campaign: str | None,
    amount_cents: int,
    stage: str,
    expected_close_date: date | None,
    closed_on: date | None,
    lost_reason: str | None,
    occurred_at: datetime,
    event_id: UUID,
) -> None:
    await connection.execute(
        """INSERT INTO deals (deal_id, status, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason, occurred_at, event_id)
           SELECT DISTINCT ON (deal_id) *
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                       $6::text[], $7::date[], $8::date[], $9::text[], $10::timestamptz[],
                       $11::uuid[])
                AS fact(deal_id, status, source, campaign, amount_cents, stage,
                        expected_close_date, closed_on, lost_reason, occurred_at, event_id)
           ORDER BY deal_id, occurred_at DESC, event_id DESC
           ON CONFLICT (deal_id) DO UPDATE
           SET status = excluded.status, source = excluded.source,
               campaign = excluded.campaign, amount_cents = excluded.amount_cents,
               stage = excluded.stage, expected_close_date = excluded.expected_close_date,
               closed_on = excluded.closed_on, lost_reason = excluded.lost_reason,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 > (deals.occurred_at, deals.event_id)""",
        [deal_id],
        [status],
        [source],
        [campaign or ""],
        [amount_cents],
        [stage],
        [expected_close_date],
        [closed_on],
        [lost_reason],
        [occurred_at],
        [event_id],
    )


async def record_account_event(
    connection: asyncpg.Connection,
    *,
    event_id: UUID,
    account_id: str,
    occurred_at: datetime,
    active: bool,
    arr_cents: int,
) -> None:
    await connection.execute(
        """INSERT INTO account_events (event_id, account_id, occurred_at, active, arr_cents)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::boolean[],
                                $5::bigint[])
           ON CONFLICT DO NOTHING""",
        [event_id],
        [account_id],
        [occurred_at],
        [active],
        [arr_cents],
    )


async def record_target(
    connection: asyncpg.Connection,
    *,
    period: str,
    amount_cents: int,
    set_at: datetime,
    event_id: UUID,
) -> None:
    await connection.execute(
        """INSERT INTO targets (period, amount_cents, set_at, event_id)
           SELECT DISTINCT ON (period) *
           FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::uuid[])
                AS fact(period, amount_cents, set_at, event_id)
           ORDER BY period, set_at DESC, event_id DESC
           ON CONFLICT (period) DO UPDATE
           SET amount_cents = excluded.amount_cents, set_at = excluded.set_at,
               event_id = excluded.event_id
           WHERE (excluded.set_at, excluded.event_id) > (targets.set_at, targets.event_id)""",
        [period],
        [amount_cents],
        [set_at],
        [event_id],
    )


# --- reads ----------------------------------------------------------------------------


# A /metrics scrape reads every figure; at one statement per fact (17 round trips, two
# per exported period) a scrape under load took 30-130 ms and held the metrics loop and
# PostgreSQL busy. The read below is ONE statement returning JSON, so one round trip and
# one snapshot: every number in it is a bigint or a count, which JSON carries exactly
# (Python parses integers unbounded).


@dataclass(frozen=True)
class PeriodBounds:
    """A period's close dates [first_day, after_last_day) and instants [start, end)."""

    period: str
    first_day: date
    after_last_day: date
    start: datetime
    end: datetime


async def figure_facts(
    connection: asyncpg.Connection, periods: list[PeriodBounds]
) -> dict[str, Any]:
    """Every fact the funnel figures need, in one statement.

    All time: ``lead_stages``: (stage, source, campaign, leads); ``handoff_decisions``:
    (outcome, reason, source, campaign, decisions, within_sla); ``accept_seconds``:
    (seconds, handoffs), how long accepted handoffs took in business seconds; ``deals``:
    (status, source, campaign, deals, value_cents) over every deal ever seen;
    ``sla_breaches``.

    ``periods``, in the order given: ``target_cents`` (or null); ``closed``: (status,
    deals, value_cents) of deals won or lost with a close date in the period; ``open``:
    (stage, value_cents) of open deals expected to close in it; ``cohort``: each account
    active just before its start, with (account_id, start_arr_cents, end_active,
    end_arr_cents), its ARR then and its state before its end. The latest event by time
    (then id) before an instant is the account's state at that instant.
    """
    facts: dict[str, Any] = json.loads(
        await connection.fetchval(
            """SELECT json_build_object(
                 'lead_stages', (SELECT coalesce(json_agg(fact), '[]') FROM (
                     SELECT stage, source, campaign, count(*) AS leads
                     FROM lead_stages GROUP BY stage, source, campaign) AS fact),
                 'handoff_decisions', (SELECT coalesce(json_agg(fact), '[]') FROM (
                     SELECT outcome, coalesce(reason, '') AS reason, source, campaign,
                            count(*) AS decisions,
                            count(*) FILTER (WHERE within_sla) AS within_sla
                     FROM handoff_decisions GROUP BY outcome, reason, source, campaign) AS fact),
                 'accept_seconds', (SELECT coalesce(json_agg(fact), '[]') FROM (
                     SELECT business_seconds_to_decision AS seconds, count(*) AS handoffs
                     FROM handoff_decisions WHERE outcome = 'accepted'
                     GROUP BY business_seconds_to_decision) AS fact),
                 'deals', (SELECT coalesce(json_agg(fact), '[]') FROM (
                     SELECT status, source, campaign, count(*) AS deals,
                            sum(amount_cents)::bigint AS value_cents
                     FROM deals GROUP BY status, source, campaign) AS fact),
                 'sla_breaches', (SELECT count(*) FROM sla_breaches),
                 'periods', (SELECT coalesce(json_agg(json_build_object(
                     'period', p.period,
                     'target_cents', (SELECT amount_cents FROM targets WHERE period = p.period),
                     'closed', (SELECT coalesce(json_agg(fact), '[]') FROM (
                         SELECT status, count(*) AS deals,
                                sum(amount_cents)::bigint AS value_cents
                         FROM deals
                         WHERE status <> 'open' AND closed_on >= p.first_day
                           AND closed_on < p.after_last_day
                         GROUP BY status) AS fact),
                     'open', (SELECT coalesce(json_agg(fact), '[]') FROM (
                         SELECT stage, sum(amount_cents)::bigint AS value_cents
                         FROM deals
                         WHERE status = 'open' AND expected_close_date >= p.first_day
                           AND expected_close_date < p.after_last_day
                         GROUP BY stage) AS fact),
                     'cohort', (SELECT coalesce(json_agg(fact), '[]') FROM (
                         WITH at_start AS (
                             SELECT DISTINCT ON (account_id) account_id, active, arr_cents
                             FROM account_events WHERE occurred_at < p.start_at
                             ORDER BY account_id, occurred_at DESC, event_id DESC),
                         at_end AS (
                             SELECT DISTINCT ON (account_id) account_id, active, arr_cents
                             FROM account_events WHERE occurred_at < p.end_at
                             ORDER BY account_id, occurred_at DESC, event_id DESC)
                         SELECT at_start.account_id, at_start.arr_cents AS start_arr_cents,
                                at_end.active AS end_active, at_end.arr_cents AS end_arr_cents
                         FROM at_start JOIN at_end USING (account_id)
                         WHERE at_start.active) AS fact)
                   ) ORDER BY p.position), '[]')
                   FROM unnest($1::text[], $2::date[], $3::date[], $4::timestamptz[],
                               $5::timestamptz[]) WITH ORDINALITY
                        AS p(period, first_day, after_last_day, start_at, end_at, position))
               )::text""",
            [bounds.period for bounds in periods],
            [bounds.first_day for bounds in periods],
            [bounds.after_last_day for bounds in periods],
            [bounds.start for bounds in periods],
            [bounds.end for bounds in periods],
        )
    )
    return facts


# --- replay: rebuilding the projections into a fresh schema ---------------------------
# Schema names come from code (metrics, metrics_replay_<time>), never from input; they
# are checked against a strict pattern before being spliced into SQL all the same.

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema(name: str) -> str:
    if not _SCHEMA.match(name):
        raise ValueError(f"invalid schema name {name!r}")
    return name


async def wait_for_durable_commits(connection: asyncpg.Connection, wait: bool) -> None:
    """Whether this session's commits wait for their WAL to reach the disk.

    A replay's batches go to a schema nobody reads and can be rebuilt from the topics,
    so they need not wait; the switch does wait, and flushing its commit record flushes
    every batch's WAL written before it (the log is written in order)."""
    await connection.execute(f"SET synchronous_commit = {'on' if wait else 'off'}")


async def lock_inbox(connection: asyncpg.Connection, schema: str) -> None:
    """Hold the live consumer still (readers go on) until the caller's transaction ends."""
    await connection.execute(f"LOCK TABLE {_schema(schema)}.inbox IN EXCLUSIVE MODE")


async def unsent_outbox(connection: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    """(event_id, event_type, topic, event_key, payload, trace_headers, created_at)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""SELECT event_id, event_type, topic, event_key, payload, trace_headers, created_at
            FROM {_schema(schema)}.outbox WHERE sent_at IS NULL ORDER BY seq"""
    )
    return rows


async def copy_outbox_row(connection: asyncpg.Connection, row: asyncpg.Record) -> None:
    """Carry an unpublished outbox row over to this connection's schema."""
    await connection.execute(
        """INSERT INTO outbox (event_id, event_type, topic, event_key, payload,
               trace_headers, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING""",
        row["event_id"],
        row["event_type"],
        row["topic"],
        row["event_key"],
        row["payload"],
        row["trace_headers"],
        row["created_at"],
    )


async def events_missing_from(connection: asyncpg.Connection, *, live: str, rebuilt: str) -> int:
    """How many events the live projections applied that the rebuilt ones did not."""
    missing: int = await connection.fetchval(
        f"""SELECT count(*) FROM {_schema(live)}.inbox AS seen
            WHERE NOT EXISTS (
                SELECT 1 FROM {_schema(rebuilt)}.inbox AS replayed
                WHERE replayed.event_id = seen.event_id)"""
    )
    return missing


async def rename_schema(connection: asyncpg.Connection, old: str, new: str) -> None:
    await connection.execute(f"ALTER SCHEMA {_schema(old)} RENAME TO {_schema(new)}")


async def drop_schema(connection: asyncpg.Connection, schema: str) -> None:
    await connection.execute(f"DROP SCHEMA {_schema(schema)} CASCADE")


async def schema_exists(connection: asyncpg.Connection, schema: str) -> bool:
    found: bool = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
    )
    return found
