"""All SQL of metrics, one function per query. Functions never commit.

Writes keep facts, keyed by entity, so redelivery and arrival order do not matter:
where an entity has several events, the row keeps the one the rule says (the earliest
lead stage, the first response deadline, every deal and account event), never the one
that happened to arrive last.

Each write takes a LIST of facts (one live, thousands in ``funnel replay``) and runs ONE
upsert over all of them, from one of two sources of rows: live, a single JSON
parameter unpacked by ``json_to_recordset`` (one round trip); in replay (``bulk``),
rows COPYed into a staging table of the session (asyncpg encodes native values in C,
where building the JSON cost Python 2-3x more per row). Where an entity appears more
than once in a batch, ``DISTINCT ON`` keeps the row the ``WHERE`` of the conflict would
keep, so one statement over many rows ends exactly where one statement per row would.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common.deals import Deal, DealEvent
from metrics.facts import (
    AccountDelivery,
    Breach,
    Deadline,
    DealDelivery,
    Decision,
    Escalation,
    HandoffLead,
    LeadStage,
    RejectionNote,
    Target,
)
from metrics.state import ACCOUNT_LIFECYCLE


@dataclass(frozen=True)
class _Source:
    """The rows one upsert reads: their name in the SQL (``fact``), and columns."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def staging(self) -> str:
        return f"staging_{self.name}"

    def definition(self) -> str:
        return ", ".join(f"{column} {kind}" for column, kind in self.columns)


def _plain(value: object) -> object:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a row value")


async def _upsert(
    connection: asyncpg.Connection,
    source: _Source,
    statement: str,
    rows: list[tuple[Any, ...]],
    *,
    bulk: bool,
) -> None:
    """``statement`` with ``{rows}`` read from ``rows`` (as ``fact``)."""
    if not rows:
        return
    if bulk:
        await connection.copy_records_to_table(source.staging, records=rows)
        await connection.execute(statement.format(rows=f"{source.staging} AS fact"))
        await connection.execute(f"TRUNCATE {source.staging}")
        return
    names = [column for column, _ in source.columns]
    await connection.execute(
        statement.format(rows=f"json_to_recordset($1::json) AS fact({source.definition()})"),
        json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=_plain),
    )


_LEAD_STAGES_ROWS = _Source(
    "lead_stages",
    (("stage", "text"), ("lead_id", "uuid"), ("source", "text"), ("campaign", "text"),
     ("occurred_at", "timestamptz"), ("event_id", "uuid")),
)  # fmt: skip
_DECISIONS_ROWS = _Source(
    "decisions",
    (("handoff_id", "uuid"), ("lead_id", "uuid"), ("outcome", "text"), ("reason", "text"),
     ("source", "text"), ("campaign", "text"), ("within_sla", "boolean"),
     ("business_seconds_to_decision", "bigint"), ("occurred_at", "timestamptz"),
     ("event_id", "uuid")),
)  # fmt: skip
_DEADLINES_ROWS = _Source(
    "deadlines",
    (("handoff_id", "uuid"), ("due_at", "timestamptz"), ("assigned_at", "timestamptz"),
     ("team", "text")),
)  # fmt: skip
_HANDOFF_LEADS_ROWS = _Source(
    "handoff_leads",
    (("handoff_id", "uuid"), ("lead_id", "uuid"), ("source", "text"), ("campaign", "text")),
)
_NOTES_ROWS = _Source(
    "rejection_notes",
    (("handoff_id", "uuid"), ("event_id", "uuid"), ("lead_id", "uuid"), ("note", "text")),
)
_BREACHES_ROWS = _Source(
    "breaches", (("handoff_id", "uuid"), ("due_at", "timestamptz"), ("policy", "text"))
)
_ESCALATIONS_ROWS = _Source(
    "escalations", (("event_id", "uuid"), ("handoff_id", "uuid"), ("occurred_at", "timestamptz"))
)
_DEAL_EVENTS_ROWS = _Source(
    "deal_events",
    (("event_id", "uuid"), ("deal_id", "text"), ("kind", "text"), ("occurred_at", "timestamptz"),
     ("delivery_id", "text"), ("fields_set", "text[]"), ("lead_id", "uuid"), ("source", "text"),
     ("campaign", "text"), ("amount_cents", "bigint"), ("stage", "text"),
     ("expected_close_date", "date"), ("closed_on", "date"), ("lost_reason", "text")),
)  # fmt: skip
_DEALS_ROWS = _Source(
    "deals",
    (("deal_id", "text"), ("status", "text"), ("lead_id", "uuid"), ("source", "text"),
     ("campaign", "text"), ("amount_cents", "bigint"), ("stage", "text"),
     ("expected_close_date", "date"), ("closed_on", "date"), ("lost_reason", "text"),
     ("opened_at", "timestamptz"), ("reopens", "integer"), ("wins", "integer"),
     ("losses", "integer")),
)  # fmt: skip
_ACCOUNT_EVENTS_ROWS = _Source(
    "account_events",
    (("event_id", "uuid"), ("account_id", "text"), ("occurred_at", "timestamptz"),
     ("active", "boolean"), ("arr_cents", "bigint"), ("lifecycle", "smallint"),
     ("delivery_id", "text")),
)  # fmt: skip
_TARGETS_ROWS = _Source(
    "targets",
    (
        ("period", "text"),
        ("amount_cents", "bigint"),
        ("set_at", "timestamptz"),
        ("event_id", "uuid"),
    ),
)
_SOURCES = (
    _LEAD_STAGES_ROWS,
    _DECISIONS_ROWS,
    _NOTES_ROWS,
    _DEADLINES_ROWS,
    _HANDOFF_LEADS_ROWS,
    _BREACHES_ROWS,
    _ESCALATIONS_ROWS,
    _DEAL_EVENTS_ROWS,
    _DEALS_ROWS,
    _ACCOUNT_EVENTS_ROWS,
    _TARGETS_ROWS,
)


async def create_staging_tables(connection: asyncpg.Connection) -> None:
    """The session's staging tables that bulk writes COPY into (replay's connection)."""
    for source in _SOURCES:
        await connection.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {source.staging} ({source.definition()})"
        )


# The PostgreSQL array literal of the fields a delivery set: JSON has no text[].
def _fields(fields_set: tuple[str, ...] | None, *, bulk: bool) -> object:
    if fields_set is None or bulk:
        return None if fields_set is None else list(fields_set)
    return "{" + ",".join(fields_set) + "}"


# --- writes (inside the consumer's transaction) ---------------------------------------


async def record_lead_stages(
    connection: asyncpg.Connection, stages: Sequence[LeadStage], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _LEAD_STAGES_ROWS,
        """INSERT INTO lead_stages (stage, lead_id, source, campaign, occurred_at, event_id)
           SELECT DISTINCT ON (stage, lead_id) * FROM {rows}
           ORDER BY stage, lead_id, occurred_at, event_id
           ON CONFLICT (stage, lead_id) DO UPDATE
           SET source = excluded.source, campaign = excluded.campaign,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 < (lead_stages.occurred_at, lead_stages.event_id)""",
        [
            (fact.stage, fact.lead_id, fact.source, fact.campaign, fact.occurred_at, fact.event_id)
            for fact in stages
        ],
        bulk=bulk,
    )


async def record_decisions(
    connection: asyncpg.Connection, decisions: Sequence[Decision], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _DECISIONS_ROWS,
        """INSERT INTO handoff_decisions (handoff_id, lead_id, outcome, reason, source,
               campaign, within_sla, business_seconds_to_decision, occurred_at, event_id)
           SELECT DISTINCT ON (handoff_id) * FROM {rows}
           ORDER BY handoff_id, occurred_at DESC, event_id DESC
           ON CONFLICT (handoff_id) DO UPDATE
           SET lead_id = excluded.lead_id, outcome = excluded.outcome,
               reason = excluded.reason, source = excluded.source,
               campaign = excluded.campaign, within_sla = excluded.within_sla,
               business_seconds_to_decision = excluded.business_seconds_to_decision,
               occurred_at = excluded.occurred_at, event_id = excluded.event_id
           WHERE (excluded.occurred_at, excluded.event_id)
                 > (handoff_decisions.occurred_at, handoff_decisions.event_id)""",
        [
            (
                fact.handoff_id,
                fact.lead_id,
                fact.outcome,
                fact.reason,
                fact.source,
                fact.campaign,
                fact.within_sla,
                fact.business_seconds_to_decision,
                fact.occurred_at,
                fact.event_id,
            )
            for fact in decisions
        ],
        bulk=bulk,
    )


async def record_deadlines(
    connection: asyncpg.Connection, deadlines: Sequence[Deadline], *, bulk: bool = False
) -> None:
    """The first response deadline: the one set by the earliest assignment (and the
    team it was set in)."""
    await _upsert(
        connection,
        _DEADLINES_ROWS,
        """INSERT INTO handoff_deadlines (handoff_id, due_at, assigned_at, team)
           SELECT DISTINCT ON (handoff_id) * FROM {rows}
           ORDER BY handoff_id, assigned_at, due_at, team
           ON CONFLICT (handoff_id) DO UPDATE
           SET due_at = excluded.due_at, assigned_at = excluded.assigned_at,
               team = excluded.team
           WHERE (excluded.assigned_at, excluded.due_at, excluded.team)
                 < (handoff_deadlines.assigned_at, handoff_deadlines.due_at,
                    handoff_deadlines.team)""",
        [(fact.handoff_id, fact.due_at, fact.assigned_at, fact.team) for fact in deadlines],
        bulk=bulk,
    )


async def record_handoff_leads(
    connection: asyncpg.Connection, leads: Sequence[HandoffLead], *, bulk: bool = False
) -> None:
    """Each handoff's lead and attribution (every assignment carries the same)."""
    await _upsert(
        connection,
        _HANDOFF_LEADS_ROWS,
        """INSERT INTO handoff_leads (handoff_id, lead_id, source, campaign)
           SELECT DISTINCT ON (handoff_id) * FROM {rows} ORDER BY handoff_id
           ON CONFLICT DO NOTHING""",
        [(fact.handoff_id, fact.lead_id, fact.source, fact.campaign) for fact in leads],
        bulk=bulk,
    )


async def record_rejection_notes(
    connection: asyncpg.Connection, notes: Sequence[RejectionNote], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _NOTES_ROWS,
        """INSERT INTO rejection_notes (handoff_id, event_id, lead_id, note)
           SELECT * FROM {rows} ON CONFLICT DO NOTHING""",
        [(fact.handoff_id, fact.event_id, fact.lead_id, fact.note) for fact in notes],
        bulk=bulk,
    )


async def record_breaches(
    connection: asyncpg.Connection, breaches: Sequence[Breach], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _BREACHES_ROWS,
        """INSERT INTO sla_breaches (handoff_id, due_at, policy)
           SELECT * FROM {rows} ON CONFLICT DO NOTHING""",
        [(fact.handoff_id, fact.due_at, fact.policy) for fact in breaches],
        bulk=bulk,
    )


async def record_escalations(
    connection: asyncpg.Connection, escalations: Sequence[Escalation], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _ESCALATIONS_ROWS,
        """INSERT INTO handoff_escalations (event_id, handoff_id, occurred_at)
           SELECT * FROM {rows} ON CONFLICT DO NOTHING""",
        [(fact.event_id, fact.handoff_id, fact.occurred_at) for fact in escalations],
        bulk=bulk,
    )


async def record_deal_events(
    connection: asyncpg.Connection, deliveries: Sequence[DealDelivery], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _DEAL_EVENTS_ROWS,
        """INSERT INTO deal_events (event_id, deal_id, kind, occurred_at, delivery_id,
               fields_set, lead_id, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason)
           SELECT * FROM {rows} ON CONFLICT DO NOTHING""",
        [
            (
                delivery.event_id,
                event.deal_id,
                event.kind,
                event.occurred_at,
                event.delivery_id,
                _fields(event.fields_set, bulk=bulk),
                event.lead_id,
                event.source,
                event.campaign,
                event.amount_cents,
                event.stage,
                event.expected_close_date,
                event.closed_on,
                event.lost_reason,
            )
            for delivery in deliveries
            for event in (delivery.event,)
        ],
        bulk=bulk,
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


async def save_deals(
    connection: asyncpg.Connection, deals: Sequence[Deal], *, bulk: bool = False
) -> None:
    """The deals' folded states, replacing what was there."""
    await _upsert(
        connection,
        _DEALS_ROWS,
        """INSERT INTO deals (deal_id, status, lead_id, source, campaign, amount_cents, stage,
               expected_close_date, closed_on, lost_reason, opened_at, reopens, wins, losses)
           SELECT * FROM {rows}
           ON CONFLICT (deal_id) DO UPDATE
           SET status = excluded.status, lead_id = excluded.lead_id,
               source = excluded.source, campaign = excluded.campaign,
               amount_cents = excluded.amount_cents, stage = excluded.stage,
               expected_close_date = excluded.expected_close_date,
               closed_on = excluded.closed_on, lost_reason = excluded.lost_reason,
               opened_at = excluded.opened_at, reopens = excluded.reopens,
               wins = excluded.wins, losses = excluded.losses""",
        [
            (
                deal.deal_id,
                deal.status,
                deal.lead_id,
                deal.source,
                deal.campaign,
                deal.amount_cents,
                deal.stage,
                deal.expected_close_date,
                deal.closed_on,
                deal.lost_reason,
                deal.opened_at,
                deal.reopens,
                deal.wins,
                deal.losses,
            )
            for deal in deals
        ],
        bulk=bulk,
    )


async def record_account_events(
    connection: asyncpg.Connection, deliveries: Sequence[AccountDelivery], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _ACCOUNT_EVENTS_ROWS,
        """INSERT INTO account_events (event_id, account_id, occurred_at, active, arr_cents,
               lifecycle, delivery_id)
           SELECT * FROM {rows} ON CONFLICT DO NOTHING""",
        [
            (
                delivery.event_id,
                event.account_id,
                event.occurred_at,
                event.active,
                event.arr_cents,
                ACCOUNT_LIFECYCLE[event.kind],
                event.delivery_id,
            )
            for delivery in deliveries
            for event in (delivery.event,)
        ],
        bulk=bulk,
    )


async def record_targets(
    connection: asyncpg.Connection, targets: Sequence[Target], *, bulk: bool = False
) -> None:
    await _upsert(
        connection,
        _TARGETS_ROWS,
        """INSERT INTO targets (period, amount_cents, set_at, event_id)
           SELECT DISTINCT ON (period) * FROM {rows}
           ORDER BY period, set_at DESC, event_id DESC
           ON CONFLICT (period) DO UPDATE
           SET amount_cents = excluded.amount_cents, set_at = excluded.set_at,
               event_id = excluded.event_id
           WHERE (excluded.set_at, excluded.event_id) > (targets.set_at, targets.event_id)""",
        [(fact.period, fact.amount_cents, fact.set_at, fact.event_id) for fact in targets],
        bulk=bulk,
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


# Each fact table is read ONCE per scrape: every row is grouped with the exported
# quarter it falls in (`p`; '' for none), so all time is the sum of every row and a
# quarter the sum of its own rows. Python sorts the rows out.

_ROW_PERIOD = "coalesce(p.period, '')"

_STAGES = f"""
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT {_ROW_PERIOD} AS period, stage, source, campaign, count(*) AS count,
               0 AS value_cents, '' AS reason
        FROM lead_stages
        LEFT JOIN p ON occurred_at >= p.start_at AND occurred_at < p.end_at
        GROUP BY 1, stage, source, campaign
      UNION ALL
        SELECT {_ROW_PERIOD}, outcome, source, campaign, count(*), 0, coalesce(reason, '')
        FROM handoff_decisions
        LEFT JOIN p ON occurred_at >= p.start_at AND occurred_at < p.end_at
        GROUP BY 1, outcome, reason, source, campaign
      UNION ALL
        SELECT {_ROW_PERIOD}, 'opened', source, campaign, count(*), sum(amount_cents)::bigint, ''
        FROM deals
        LEFT JOIN p ON opened_at >= p.start_at AND opened_at < p.end_at
        GROUP BY 1, source, campaign
      UNION ALL
        SELECT {_ROW_PERIOD}, status, source, campaign, count(*), sum(amount_cents)::bigint, ''
        FROM deals
        LEFT JOIN p ON closed_on >= p.first_day AND closed_on < p.after_last_day
        WHERE status <> 'open'
        GROUP BY 1, status, source, campaign) AS fact"""
"""Stages by (period, source, campaign), each counted when it happened: deals opened
by when they were opened, won and lost (current status) by their close date."""

# Of the leads captured in a window, by their source and campaign: how many have
# reached each later stage, whenever they did. One index probe per lead and stage
# (lead_stages' key, the lead indexes of handoff_decisions and deals): cheap whatever
# the planner believes about the tables' sizes (a freshly replayed schema has no
# statistics yet, and a join chosen on them re-sorted every decision per lead).
_COHORT = """
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT period, source, campaign, count(*) AS captured,
               count(*) FILTER (WHERE qualified) AS qualified,
               count(*) FILTER (WHERE accepted) AS accepted,
               count(*) FILTER (WHERE opened) AS opened,
               count(*) FILTER (WHERE won) AS won
        FROM (
            SELECT {period} AS period, lead_stages.source, lead_stages.campaign,
                   EXISTS (SELECT FROM lead_stages AS qualified
                           WHERE qualified.stage = 'qualified'
                             AND qualified.lead_id = lead_stages.lead_id) AS qualified,
                   EXISTS (SELECT FROM handoff_decisions AS decision
                           WHERE decision.outcome = 'accepted'
                             AND decision.lead_id = lead_stages.lead_id) AS accepted,
                   EXISTS (SELECT FROM deals WHERE deals.lead_id = lead_stages.lead_id) AS opened,
                   EXISTS (SELECT FROM deals WHERE deals.lead_id = lead_stages.lead_id
                                               AND deals.status = 'won') AS won
            FROM lead_stages {in_period}
            WHERE lead_stages.stage = 'captured') AS lead
        GROUP BY period, source, campaign) AS fact"""

# SLA attainment (ARCHITECTURE.md): of the handoffs whose first response deadline fell
# in the window and is past ($1 is now), how many were decided (accepted or rejected)
# by it; by the lead's source and campaign ('' while its assignment is unknown).
_SLA = f"""
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT {_ROW_PERIOD} AS period, coalesce(lead.source, '') AS source,
               coalesce(lead.campaign, '') AS campaign, count(*) AS deadlines,
               count(*) FILTER (WHERE decision.occurred_at <= due_at) AS met
        FROM handoff_deadlines LEFT JOIN handoff_decisions AS decision USING (handoff_id)
        LEFT JOIN handoff_leads AS lead USING (handoff_id)
        LEFT JOIN p ON due_at >= p.start_at AND due_at < p.end_at
        WHERE due_at <= $1
        GROUP BY 1, 2, 3) AS fact"""
# Breaches and escalations, beside it.
_BREACHES = f"""
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT {_ROW_PERIOD} AS period, policy, count(*) AS breaches
        FROM sla_breaches LEFT JOIN p ON due_at >= p.start_at AND due_at < p.end_at
        GROUP BY 1, policy) AS fact"""
_ESCALATIONS = f"""
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT {_ROW_PERIOD} AS period, count(*) AS escalations
        FROM handoff_escalations
        LEFT JOIN p ON occurred_at >= p.start_at AND occurred_at < p.end_at
        GROUP BY 1) AS fact"""
# Time to accept, by histogram bucket: the number of upper bounds ($8, floored and
# sorted) below the seconds, so bucket k holds what lies between bound k and k+1 (a
# whole number of seconds x is above a bound b exactly when it is above floor(b)).
_ACCEPT_SECONDS = f"""
    SELECT coalesce(json_agg(fact), '[]') FROM (
        SELECT {_ROW_PERIOD} AS period,
               width_bucket(business_seconds_to_decision - 1, $8::bigint[]) AS bucket,
               count(*) AS handoffs, sum(business_seconds_to_decision)::bigint AS seconds
        FROM handoff_decisions
        LEFT JOIN p ON occurred_at >= p.start_at AND occurred_at < p.end_at
        WHERE outcome = 'accepted'
        GROUP BY 1, 2) AS fact"""

_FIGURE_FACTS = f"""
WITH p AS (
    SELECT * FROM unnest($2::text[], $3::date[], $4::date[], $5::timestamptz[],
                         $6::timestamptz[])
                  AS p(period, first_day, after_last_day, start_at, end_at))
SELECT json_build_object(
  'stages', ({_STAGES}),
  'sla', ({_SLA}),
  'breaches', ({_BREACHES}),
  'escalations', ({_ESCALATIONS}),
  'accept_seconds', ({_ACCEPT_SECONDS}),
  'cohort', ({
    _COHORT.format(
        period="p.period",
        in_period=("JOIN p ON occurred_at >= p.start_at AND occurred_at < p.end_at"),
    )
}),
  'all_time_cohort', CASE WHEN $7 THEN ({_COHORT.format(period="''", in_period="")}) END,
  'reopens', (SELECT coalesce(sum(reopens), 0) FROM deals),
  'closings', (SELECT json_build_object('won', coalesce(sum(wins), 0),
                                        'lost', coalesce(sum(losses), 0)) FROM deals),
  'targets', (SELECT coalesce(json_object_agg(period, amount_cents), '{{}}')
              FROM targets WHERE period IN (SELECT period FROM p)),
  'open', (SELECT coalesce(json_agg(fact), '[]') FROM (
      SELECT p.period, stage, sum(amount_cents)::bigint AS value_cents
      FROM deals JOIN p ON expected_close_date >= p.first_day
                       AND expected_close_date < p.after_last_day
      WHERE status = 'open'
      GROUP BY p.period, stage) AS fact),
  'accounts', (SELECT coalesce(json_agg(fact), '[]') FROM (
      SELECT p.period, customer.*
      FROM p CROSS JOIN LATERAL (
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
          SELECT at_start.arr_cents AS start_arr_cents, at_end.active AS end_active,
                 at_end.arr_cents AS end_arr_cents
          FROM at_start JOIN at_end USING (account_id)
          WHERE at_start.active) AS customer
      WHERE p.start_at <= $1) AS fact),
  'started', (SELECT coalesce(json_agg(period), '[]') FROM p WHERE p.start_at <= $1)
)::text"""


async def figure_facts(
    connection: asyncpg.Connection,
    periods: list[PeriodBounds],
    *,
    now: datetime,
    all_time_cohort: bool,
    accept_seconds_bounds: Sequence[float],
) -> dict[str, Any]:
    """Every fact the funnel figures need, in one statement.

    Rows of ``stages`` (stage, source, campaign, count, value_cents, reason: lead
    stages, decisions and deals), ``sla`` (source, campaign, deadlines past by ``now``,
    met),
    ``breaches`` (policy, breaches), ``escalations`` and ``accept_seconds`` (bucket
    of ``accept_seconds_bounds``, handoffs, seconds) carry the ``period`` they fall in
    ("" for none of ``periods``): all time is every row. ``cohort`` (period, source,
    campaign and how many of the leads captured reached each stage), and
    ``all_time_cohort`` only if asked (it reads every lead). ``reopens``; ``targets``
    {period: cents}; ``open`` (period, stage, value_cents) of open deals expected to
    close in it; ``accounts``: for each period that has started (``started``), each
    account active just before its start, with start_arr_cents, end_active and
    end_arr_cents (its state before the end).
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
            sorted(math.floor(bound) for bound in accept_seconds_bounds),
        )
    )
    return facts


async def accept_seconds_by_source(
    connection: asyncpg.Connection, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Of the handoffs accepted in [start, end), how many took how many business seconds,
    by source and campaign: what a median per campaign needs (the histogram's buckets
    cannot give one)."""
    rows = await connection.fetch(
        """SELECT source, campaign, business_seconds_to_decision AS seconds,
                  count(*) AS handoffs
           FROM handoff_decisions
           WHERE outcome = 'accepted' AND occurred_at >= $1 AND occurred_at < $2
           GROUP BY 1, 2, 3""",
        start,
        end,
    )
    return [dict(row) for row in rows]


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


# Read while a replay writes: the deal fold fetches a deal's events by deal.
_INDEXES_REPLAY_READS = frozenset({"deal_events_by_deal"})


async def drop_secondary_indexes(connection: asyncpg.Connection) -> list[str]:
    """Drop this schema's indexes that back no constraint and that replay's writes do
    not read; their definitions, to build them again with :func:`create_indexes`.

    A replay fills a private schema from empty: keeping every index up to date row by
    row cost more of PostgreSQL's time than the rows themselves, and building an index
    once over the whole table is a single sort."""
    rows = await connection.fetch(
        """SELECT indexname, indexdef FROM pg_indexes AS index
           WHERE schemaname = current_schema()
             AND NOT EXISTS (SELECT FROM pg_constraint
                             WHERE conname = index.indexname
                               AND connamespace = current_schema()::regnamespace)
           ORDER BY indexname"""
    )
    dropped = [row for row in rows if row["indexname"] not in _INDEXES_REPLAY_READS]
    for row in dropped:
        await connection.execute(f"DROP INDEX {_schema(row['indexname'])}")
    return [row["indexdef"] for row in dropped]


async def create_indexes(connection: asyncpg.Connection, definitions: list[str]) -> None:
    """Build the indexes :func:`drop_secondary_indexes` dropped (its own definitions,
    as PostgreSQL wrote them, schema-qualified)."""
    for definition in definitions:
        await connection.execute(definition)


async def analyze(connection: asyncpg.Connection) -> None:
    """Gather the planner's statistics of this connection's schema's tables (a replayed
    schema has none until autovacuum gets to it, and its first reads would be planned
    blind). The names come from the catalogue, and are checked all the same."""
    tables = await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
    )
    if tables:
        await connection.execute(
            "ANALYZE " + ", ".join(_schema(row["tablename"]) for row in tables)
        )


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
