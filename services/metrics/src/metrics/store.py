"""All SQL of metrics, one function per query. Functions never commit.

Writes keep facts, keyed by entity, so redelivery and arrival order do not matter:
where an entity has several events, the row keeps the one the rule says (the earliest
lead stage, the first response deadline, every deal and account event), never the one
that happened to arrive last.

Each write takes a LIST of facts (one live, thousands in ``funnel replay``) and sends
it as ONE JSON parameter that PostgreSQL unpacks with ``json_to_recordset``: a batch
costs one statement per kind of fact, and Python only builds plain values for the C
JSON encoder (column arrays cost asyncpg's encoder about 10 us an event). Where an
entity appears more than once in a batch, ``DISTINCT ON`` keeps the row the ``WHERE``
of the conflict would keep, so one statement over many rows ends exactly where one
statement per row would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from metrics.facts import (
    AccountDelivery,
    Breach,
    Deadline,
    DealDelivery,
    Decision,
    Escalation,
    LeadStage,
    Target,
)
from metrics.state import ACCOUNT_LIFECYCLE, Deal, DealEvent


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


# --- writes (inside the consumer's transaction) ---------------------------------------


async def record_lead_stages(connection: asyncpg.Connection, stages: Sequence[LeadStage]) -> None:
    await connection.execute(
        """INSERT INTO lead_stages (stage, lead_id, source, campaign, occurred_at, event_id)
           SELECT DISTINCT ON (stage, lead_id) *
           FROM json_to_recordset($1::json) AS fact(stage text, lead_id uuid, source text,
                campaign text, occurred_at timestamptz, event_id uuid)
           ORDER BY stage, lead_id, occurred_at, event_id
           ON CONFLICT (stage, lead_id) DO UPDATE
           SET source = excluded.source, campaign = excluded.campaign,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 < (lead_stages.occurred_at, lead_stages.event_id)""",
        _json(
            [
                {
                    "stage": fact.stage,
                    "lead_id": str(fact.lead_id),
                    "source": fact.source,
                    "campaign": fact.campaign,
                    "occurred_at": fact.occurred_at.isoformat(),
                    "event_id": str(fact.event_id),
                }
                for fact in stages
            ]
        ),
    )


async def record_decisions(connection: asyncpg.Connection, decisions: Sequence[Decision]) -> None:
    await connection.execute(
        """INSERT INTO handoff_decisions (handoff_id, lead_id, outcome, reason, source,
               campaign, within_sla, business_seconds_to_decision, occurred_at, event_id)
           SELECT DISTINCT ON (handoff_id) *
           FROM json_to_recordset($1::json) AS fact(handoff_id uuid, lead_id uuid,
                outcome text, reason text, source text, campaign text, within_sla boolean,
                business_seconds_to_decision bigint, occurred_at timestamptz, event_id uuid)
           ORDER BY handoff_id, occurred_at DESC, event_id DESC
           ON CONFLICT (handoff_id) DO UPDATE
           SET lead_id = excluded.lead_id, outcome = excluded.outcome,
               reason = excluded.reason, source = excluded.source,
               campaign = excluded.campaign, within_sla = excluded.within_sla,
               business_seconds_to_decision = excluded.business_seconds_to_decision,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 > (handoff_decisions.occurred_at, handoff_decisions.event_id)""",
        _json(
            [
                {
                    "handoff_id": str(fact.handoff_id),
                    "lead_id": str(fact.lead_id),
                    "outcome": fact.outcome,
                    "reason": fact.reason,
                    "source": fact.source,
                    "campaign": fact.campaign,
                    "within_sla": fact.within_sla,
                    "business_seconds_to_decision": fact.business_seconds_to_decision,
                    "occurred_at": fact.occurred_at.isoformat(),
                    "event_id": str(fact.event_id),
                }
                for fact in decisions
            ]
        ),
    )


async def record_deadlines(connection: asyncpg.Connection, deadlines: Sequence[Deadline]) -> None:
    """The first response deadline: the one set by the earliest assignment."""
    await connection.execute(
        """INSERT INTO handoff_deadlines (handoff_id, due_at, assigned_at)
           SELECT DISTINCT ON (handoff_id) *
           FROM json_to_recordset($1::json)
                AS fact(handoff_id uuid, due_at timestamptz, assigned_at timestamptz)
           ORDER BY handoff_id, assigned_at, due_at
           ON CONFLICT (handoff_id) DO UPDATE
           SET due_at = excluded.due_at, assigned_at = excluded.assigned_at
           WHERE (excluded.assigned_at, excluded.due_at)
                 < (handoff_deadlines.assigned_at, handoff_deadlines.due_at)""",
        _json(
            [
                {
                    "handoff_id": str(fact.handoff_id),
                    "due_at": fact.due_at.isoformat(),
                    "assigned_at": fact.assigned_at.isoformat(),
                }
                for fact in deadlines
            ]
        ),
    )


async def record_breaches(connection: asyncpg.Connection, breaches: Sequence[Breach]) -> None:
    await connection.execute(
        """INSERT INTO sla_breaches (handoff_id, due_at, policy)
           SELECT * FROM json_to_recordset($1::json)
                AS fact(handoff_id uuid, due_at timestamptz, policy text)
           ON CONFLICT DO NOTHING""",
        _json(
            [
                {
                    "handoff_id": str(fact.handoff_id),
                    "due_at": fact.due_at.isoformat(),
                    "policy": fact.policy,
                }
                for fact in breaches
            ]
        ),
    )


async def record_escalations(
    connection: asyncpg.Connection, escalations: Sequence[Escalation]
) -> None:
    await connection.execute(
        """INSERT INTO handoff_escalations (event_id, handoff_id, occurred_at)
           SELECT * FROM json_to_recordset($1::json)
                AS fact(event_id uuid, handoff_id uuid, occurred_at timestamptz)
           ON CONFLICT DO NOTHING""",
        _json(
            [
                {
                    "event_id": str(fact.event_id),
                    "handoff_id": str(fact.handoff_id),
                    "occurred_at": fact.occurred_at.isoformat(),
                }
                for fact in escalations
            ]
        ),
    )


async def record_deal_events(
    connection: asyncpg.Connection, deliveries: Sequence[DealDelivery]
) -> None:
    await connection.execute(
        """INSERT INTO deal_events (event_id, deal_id, kind, occurred_at, delivery_id,
               fields_set, lead_id, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason)
           SELECT * FROM json_to_recordset($1::json) AS fact(event_id uuid, deal_id text,
                kind text, occurred_at timestamptz, delivery_id text, fields_set text[],
                lead_id uuid, source text, campaign text, amount_cents bigint, stage text,
                expected_close_date date, closed_on date, lost_reason text)
           ON CONFLICT DO NOTHING""",
        _json(
            [
                {
                    "event_id": str(delivery.event_id),
                    "deal_id": event.deal_id,
                    "kind": event.kind,
                    "occurred_at": event.occurred_at.isoformat(),
                    "delivery_id": event.delivery_id,
                    # PostgreSQL's array literal; the names are a fixed set of words.
                    "fields_set": None
                    if event.fields_set is None
                    else "{" + ",".join(event.fields_set) + "}",
                    "lead_id": None if event.lead_id is None else str(event.lead_id),
                    "source": event.source,
                    "campaign": event.campaign,
                    "amount_cents": event.amount_cents,
                    "stage": event.stage,
                    "expected_close_date": _day(event.expected_close_date),
                    "closed_on": _day(event.closed_on),
                    "lost_reason": event.lost_reason,
                }
                for delivery in deliveries
                for event in (delivery.event,)
            ]
        ),
    )


async def deal_events(connection: asyncpg.Connection, deal_ids: Sequence[str]) -> list[DealEvent]:
    """Every event of these deals."""
    rows = await connection.fetch(
        """SELECT deal_id, kind, occurred_at, delivery_id, fields_set, lead_id, source,
                  campaign, amount_cents, stage, expected_close_date, closed_on, lost_reason
           FROM deal_events WHERE deal_id = ANY($1::text[])""",
        list(deal_ids),
    )
    return [
        DealEvent(
            deal_id=row["deal_id"],
            kind=row["kind"],
            occurred_at=row["occurred_at"],
            delivery_id=row["delivery_id"],
            fields_set=None if row["fields_set"] is None else tuple(row["fields_set"]),
            lead_id=row["lead_id"],
            source=row["source"],
            campaign=row["campaign"],
            amount_cents=row["amount_cents"],
            stage=row["stage"],
            expected_close_date=row["expected_close_date"],
            closed_on=row["closed_on"],
            lost_reason=row["lost_reason"],
        )
        for row in rows
    ]


async def save_deals(connection: asyncpg.Connection, deals: Sequence[Deal]) -> None:
    """The deals' folded states, replacing what was there."""
    await connection.execute(
        """INSERT INTO deals (deal_id, status, lead_id, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason, opened_at, reopens)
           SELECT * FROM json_to_recordset($1::json) AS deal(deal_id text, status text,
                lead_id uuid, source text, campaign text, amount_cents bigint, stage text,
                expected_close_date date, closed_on date, lost_reason text,
                opened_at timestamptz, reopens integer)
           ON CONFLICT (deal_id) DO UPDATE
           SET status = excluded.status, lead_id = excluded.lead_id,
               source = excluded.source, campaign = excluded.campaign,
               amount_cents = excluded.amount_cents, stage = excluded.stage,
               expected_close_date = excluded.expected_close_date,
               closed_on = excluded.closed_on, lost_reason = excluded.lost_reason,
               opened_at = excluded.opened_at, reopens = excluded.reopens""",
        _json(
            [
                {
                    "deal_id": deal.deal_id,
                    "status": deal.status,
                    "lead_id": None if deal.lead_id is None else str(deal.lead_id),
                    "source": deal.source,
                    "campaign": deal.campaign,
                    "amount_cents": deal.amount_cents,
                    "stage": deal.stage,
                    "expected_close_date": _day(deal.expected_close_date),
                    "closed_on": _day(deal.closed_on),
                    "lost_reason": deal.lost_reason,
                    "opened_at": deal.opened_at.isoformat(),
                    "reopens": deal.reopens,
                }
                for deal in deals
            ]
        ),
    )


async def record_account_events(
    connection: asyncpg.Connection, deliveries: Sequence[AccountDelivery]
) -> None:
    await connection.execute(
        """INSERT INTO account_events (event_id, account_id, occurred_at, active, arr_cents,
               lifecycle, delivery_id)
           SELECT * FROM json_to_recordset($1::json) AS fact(event_id uuid, account_id text,
                occurred_at timestamptz, active boolean, arr_cents bigint, lifecycle smallint,
                delivery_id text)
           ON CONFLICT DO NOTHING""",
        _json(
            [
                {
                    "event_id": str(delivery.event_id),
                    "account_id": event.account_id,
                    "occurred_at": event.occurred_at.isoformat(),
                    "active": event.active,
                    "arr_cents": event.arr_cents,
                    "lifecycle": ACCOUNT_LIFECYCLE[event.kind],
                    "delivery_id": event.delivery_id,
                }
                for delivery in deliveries
                for event in (delivery.event,)
            ]
        ),
    )


async def record_targets(connection: asyncpg.Connection, targets: Sequence[Target]) -> None:
    await connection.execute(
        """INSERT INTO targets (period, amount_cents, set_at, event_id)
           SELECT DISTINCT ON (period) *
           FROM json_to_recordset($1::json)
                AS fact(period text, amount_cents bigint, set_at timestamptz, event_id uuid)
           ORDER BY period, set_at DESC, event_id DESC
           ON CONFLICT (period) DO UPDATE
           SET amount_cents = excluded.amount_cents, set_at = excluded.set_at,
               event_id = excluded.event_id
           WHERE (excluded.set_at, excluded.event_id) > (targets.set_at, targets.event_id)""",
        _json(
            [
                {
                    "period": fact.period,
                    "amount_cents": fact.amount_cents,
                    "set_at": fact.set_at.isoformat(),
                    "event_id": str(fact.event_id),
                }
                for fact in targets
            ]
        ),
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


# Stages per (source, campaign) within [start, end): each counted when it happened.
# Deals opened count by when they were opened, won and lost by their close date.
_STAGES = """
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT stage, source, campaign, count(*) AS count, 0 AS value_cents, '' AS reason
        FROM lead_stages WHERE occurred_at >= {start} AND occurred_at < {end}
        GROUP BY stage, source, campaign
      UNION ALL
        SELECT outcome, source, campaign, count(*), 0, coalesce(reason, '')
        FROM handoff_decisions WHERE occurred_at >= {start} AND occurred_at < {end}
        GROUP BY outcome, reason, source, campaign
      UNION ALL
        SELECT 'opened', source, campaign, count(*), sum(amount_cents)::bigint, ''
        FROM deals WHERE opened_at >= {start} AND opened_at < {end}
        GROUP BY source, campaign
      UNION ALL
        SELECT status, source, campaign, count(*), sum(amount_cents)::bigint, ''
        FROM deals WHERE status <> 'open'
          AND closed_on >= {first_day} AND closed_on < {after_last_day}
        GROUP BY status, source, campaign) AS fact"""

# Of the leads captured within [start, end), by their source and campaign: how many
# have reached each later stage, whenever they did.
_COHORT = """
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT captured.source, captured.campaign, count(*) AS captured,
               count(qualified.lead_id) AS qualified, count(accepted.lead_id) AS accepted,
               count(deal.lead_id) AS opened,
               count(deal.lead_id) FILTER (WHERE deal.won) AS won
        FROM lead_stages AS captured
        LEFT JOIN lead_stages AS qualified
               ON qualified.stage = 'qualified' AND qualified.lead_id = captured.lead_id
        LEFT JOIN (SELECT DISTINCT lead_id FROM handoff_decisions
                   WHERE outcome = 'accepted') AS accepted
               ON accepted.lead_id = captured.lead_id
        LEFT JOIN (SELECT lead_id, bool_or(status = 'won') AS won FROM deals
                   WHERE lead_id IS NOT NULL GROUP BY lead_id) AS deal
               ON deal.lead_id = captured.lead_id
        WHERE captured.stage = 'captured'
          AND captured.occurred_at >= {start} AND captured.occurred_at < {end}
        GROUP BY captured.source, captured.campaign) AS fact"""

# SLA attainment (ARCHITECTURE.md): of the handoffs whose first response deadline fell
# in [start, end) and is past, how many were decided (accepted or rejected) by it.
_SLA = """
    json_build_object(
        'deadlines', (SELECT count(*) FROM handoff_deadlines
                      WHERE due_at >= {start} AND due_at < {end} AND due_at <= $1),
        'met', (SELECT count(*) FROM handoff_deadlines JOIN handoff_decisions USING (handoff_id)
                WHERE due_at >= {start} AND due_at < {end} AND due_at <= $1
                  AND handoff_decisions.occurred_at <= due_at),
        'breaches', (SELECT coalesce(json_object_agg(policy, breaches), '{{}}') FROM (
                         SELECT policy, count(*) AS breaches FROM sla_breaches
                         WHERE due_at >= {start} AND due_at < {end} GROUP BY policy) AS fact),
        'escalations', (SELECT count(*) FROM handoff_escalations
                        WHERE occurred_at >= {start} AND occurred_at < {end}))"""

_ACCEPT_SECONDS = """
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT business_seconds_to_decision AS seconds, count(*) AS handoffs
        FROM handoff_decisions WHERE outcome = 'accepted'
          AND occurred_at >= {start} AND occurred_at < {end}
        GROUP BY business_seconds_to_decision) AS fact"""

_EVER = {"start": "'-infinity'", "end": "'infinity'"}
_IN_PERIOD = {
    "start": "p.start_at",
    "end": "p.end_at",
    "first_day": "p.first_day",
    "after_last_day": "p.after_last_day",
}

_FIGURE_FACTS = f"""
SELECT json_build_object(
  'all_time', json_build_object(
     'stages', (SELECT coalesce(json_agg(fact), '[]') FROM (
         SELECT stage, source, campaign, count(*) AS count, 0 AS value_cents, '' AS reason
         FROM lead_stages GROUP BY stage, source, campaign
       UNION ALL
         SELECT outcome, source, campaign, count(*), 0, coalesce(reason, '')
         FROM handoff_decisions GROUP BY outcome, reason, source, campaign
       UNION ALL
         SELECT 'opened', source, campaign, count(*), sum(amount_cents)::bigint, ''
         FROM deals GROUP BY source, campaign
       UNION ALL
         SELECT status, source, campaign, count(*), sum(amount_cents)::bigint, ''
         FROM deals WHERE status <> 'open' GROUP BY status, source, campaign) AS fact),
     'cohort', CASE WHEN $7 THEN ({_COHORT.format(**_EVER)}) END,
     'reopens', (SELECT coalesce(sum(reopens), 0) FROM deals),
     'sla', {_SLA.format(**_EVER)},
     'accept_seconds', ({_ACCEPT_SECONDS.format(**_EVER)})),
  'periods', (SELECT coalesce(json_agg(json_build_object(
     'period', p.period,
     'target_cents', (SELECT amount_cents FROM targets WHERE period = p.period),
     'stages', ({_STAGES.format(**_IN_PERIOD)}),
     'cohort', ({_COHORT.format(**_IN_PERIOD)}),
     'sla', {_SLA.format(**_IN_PERIOD)},
     'accept_seconds', ({_ACCEPT_SECONDS.format(**_IN_PERIOD)}),
     'open', (SELECT coalesce(json_agg(fact), '[]') FROM (
         SELECT stage, sum(amount_cents)::bigint AS value_cents
         FROM deals
         WHERE status = 'open' AND expected_close_date >= p.first_day
           AND expected_close_date < p.after_last_day
         GROUP BY stage) AS fact),
     'accounts', CASE WHEN p.start_at <= $1 THEN (SELECT coalesce(json_agg(fact), '[]') FROM (
         WITH at_start AS (
             SELECT DISTINCT ON (account_id) account_id, active, arr_cents
             FROM account_events WHERE occurred_at < p.start_at
             ORDER BY account_id, occurred_at DESC, lifecycle DESC,
                      delivery_id COLLATE "C" DESC NULLS LAST, arr_cents DESC),
         at_end AS (
             SELECT DISTINCT ON (account_id) account_id, active, arr_cents
             FROM account_events WHERE occurred_at < p.end_at
             ORDER BY account_id, occurred_at DESC, lifecycle DESC,
                      delivery_id COLLATE "C" DESC NULLS LAST, arr_cents DESC)
         SELECT at_start.account_id, at_start.arr_cents AS start_arr_cents,
                at_end.active AS end_active, at_end.arr_cents AS end_arr_cents
         FROM at_start JOIN at_end USING (account_id)
         WHERE at_start.active) AS fact) END
   ) ORDER BY p.position), '[]')
   FROM unnest($2::text[], $3::date[], $4::date[], $5::timestamptz[], $6::timestamptz[])
        WITH ORDINALITY AS p(period, first_day, after_last_day, start_at, end_at, position))
)::text"""


async def figure_facts(
    connection: asyncpg.Connection,
    periods: list[PeriodBounds],
    *,
    now: datetime,
    all_time_cohort: bool,
) -> dict[str, Any]:
    """Every fact the funnel figures need, in one statement.

    ``all_time``: ``stages`` (stage, source, campaign, count, value_cents, reason) over
    every lead stage, decision and deal ever seen (deals by their current status);
    ``cohort`` (only if asked: it reads every lead) of every lead ever captured;
    ``reopens``; ``sla`` (deadlines past by ``now``, met, breaches by policy,
    escalations); ``accept_seconds`` (seconds, handoffs).

    ``periods``, in the order given: the same ``stages``, ``cohort``, ``sla`` and
    ``accept_seconds`` within the period, ``target_cents`` (or null), ``open``: (stage,
    value_cents) of open deals expected to close in it, and ``accounts`` (null for a
    period that has not started): each account active just before its start, with
    (account_id, start_arr_cents, end_active, end_arr_cents), its ARR then and its
    state before its end.
    """
    facts: dict[str, Any] = json.loads(
        await connection.fetchval(
            _FIGURE_FACTS,
            now,
            [bounds.period for bounds in periods],
            [bounds.first_day for bounds in periods],
            [bounds.after_last_day for bounds in periods],
            [bounds.start for bounds in periods],
            [bounds.end for bounds in periods],
            all_time_cohort,
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
