"""All SQL of handoff, one function per query. Functions never commit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common.events import Attribution
from handoff.models import (
    DecisionRecord,
    Handoff,
    InboxHandoff,
    LeadTouch,
    RejectIn,
    Rep,
    RepIn,
    Status,
    Team,
    TeamIn,
)
from handoff.notifications import Notification
from handoff.routing import RepState, TeamRule
from handoff.sla import BusinessCalendar, SlaPolicy


async def record_lead(
    connection: asyncpg.Connection,
    *,
    lead_id: UUID,
    source: str,
    campaign: str | None,
    captured_at: datetime,
    form_id: str | None = None,
) -> None:
    await connection.execute(
        """INSERT INTO leads (lead_id, source, campaign, captured_at, form_id)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (lead_id) DO NOTHING""",
        lead_id,
        source,
        campaign,
        captured_at,
        form_id,
    )


async def count_leads(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM leads")
    return count


# --- SLA policies ----------------------------------------------------------------------


async def upsert_policy(connection: asyncpg.Connection, name: str, policy: SlaPolicy) -> None:
    """Add or replace a policy (handoffs keep the copy they were assigned under)."""
    await connection.execute(
        """INSERT INTO sla_policies (name, policy) VALUES ($1, $2::jsonb)
           ON CONFLICT (name) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()""",
        name,
        policy.model_dump_json(),
    )


async def get_policy(connection: asyncpg.Connection, name: str) -> SlaPolicy | None:
    text = await connection.fetchval("SELECT policy FROM sla_policies WHERE name = $1", name)
    return None if text is None else SlaPolicy.model_validate_json(text)


async def list_policies(connection: asyncpg.Connection) -> list[tuple[str, SlaPolicy]]:
    rows = await connection.fetch("SELECT name, policy FROM sla_policies ORDER BY name")
    return [(row["name"], SlaPolicy.model_validate_json(row["policy"])) for row in rows]


# --- teams -----------------------------------------------------------------------------


def _team(row: asyncpg.Record) -> Team:
    return Team.model_validate(
        {
            "team_id": row["team_id"],
            "manager_id": row["manager_id"],
            "priority": row["priority"],
            "segments": row["segments"],
            "countries": row["countries"],
            "sla_policy": row["sla_policy"],
            "form_type_policies": json.loads(row["form_type_policies"]),
            "webhooks": json.loads(row["webhooks"]),
            "manager_email": row["manager_email"],
            "manager_slack_member_id": row["manager_slack_member_id"],
        }
    )


async def upsert_team(connection: asyncpg.Connection, team_id: str, team: TeamIn) -> Team:
    row = await connection.fetchrow(
        """INSERT INTO teams (team_id, manager_id, priority, segments, countries, sla_policy,
                              form_type_policies, webhooks, manager_email,
                              manager_slack_member_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10)
           ON CONFLICT (team_id) DO UPDATE SET
               manager_id = EXCLUDED.manager_id, priority = EXCLUDED.priority,
               segments = EXCLUDED.segments, countries = EXCLUDED.countries,
               sla_policy = EXCLUDED.sla_policy,
               form_type_policies = EXCLUDED.form_type_policies,
               webhooks = EXCLUDED.webhooks, manager_email = EXCLUDED.manager_email,
               manager_slack_member_id = EXCLUDED.manager_slack_member_id,
               updated_at = now()
           RETURNING *""",
        team_id,
        team.manager_id,
        team.priority,
        list(team.segments),
        list(team.countries),
        team.sla_policy,
        json.dumps(team.form_type_policies),
        json.dumps([hook.model_dump(mode="json") for hook in team.webhooks]),
        team.manager_email,
        team.manager_slack_member_id,
    )
    return _team(row)


async def get_team(connection: asyncpg.Connection, team_id: str) -> Team | None:
    row = await connection.fetchrow("SELECT * FROM teams WHERE team_id = $1", team_id)
    return None if row is None else _team(row)


async def lock_team(connection: asyncpg.Connection, team_id: str) -> Team | None:
    """The team, locked: routing into a team is serialised so capacity holds."""
    row = await connection.fetchrow("SELECT * FROM teams WHERE team_id = $1 FOR UPDATE", team_id)
    return None if row is None else _team(row)


async def list_teams(connection: asyncpg.Connection) -> list[Team]:
    return [_team(row) for row in await connection.fetch("SELECT * FROM teams ORDER BY team_id")]


async def team_rules(connection: asyncpg.Connection) -> list[TeamRule]:
    rows = await connection.fetch("SELECT team_id, priority, segments, countries FROM teams")
    return [
        TeamRule(
            team_id=row["team_id"],
            priority=row["priority"],
            segments=frozenset(row["segments"]),
            countries=frozenset(row["countries"]),
        )
        for row in rows
    ]


# --- reps ------------------------------------------------------------------------------


async def upsert_rep(connection: asyncpg.Connection, rep_id: str, rep: RepIn) -> Rep:
    row = await connection.fetchrow(
        """WITH saved AS (
               INSERT INTO reps (rep_id, team_id, segments, capacity, weight, time_zone,
                                 working_hours, active, email, slack_member_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
               ON CONFLICT (rep_id) DO UPDATE SET
                   team_id = EXCLUDED.team_id, segments = EXCLUDED.segments,
                   capacity = EXCLUDED.capacity, weight = EXCLUDED.weight,
                   time_zone = EXCLUDED.time_zone, working_hours = EXCLUDED.working_hours,
                   active = EXCLUDED.active, email = EXCLUDED.email,
                   slack_member_id = EXCLUDED.slack_member_id, updated_at = now()
               RETURNING *)
           SELECT saved.*, (SELECT count(*) FROM handoffs h
                            WHERE h.rep_id = saved.rep_id AND h.status = 'assigned')
                           AS open_handoffs
           FROM saved""",
        rep_id,
        rep.team_id,
        list(rep.segments),
        rep.capacity,
        rep.weight,
        rep.time_zone,
        None
        if rep.working_hours is None
        else json.dumps(
            {day: [span.model_dump() for span in spans] for day, spans in rep.working_hours.items()}
        ),
        rep.active,
        rep.email,
        rep.slack_member_id,
    )
    return _rep(row)


_REP_WITH_LOAD = """
    SELECT r.*, (SELECT count(*) FROM handoffs h
                 WHERE h.rep_id = r.rep_id AND h.status = 'assigned') AS open_handoffs
    FROM reps r"""


def _rep(row: asyncpg.Record) -> Rep:
    return Rep.model_validate(
        {
            "rep_id": row["rep_id"],
            "team_id": row["team_id"],
            "segments": row["segments"],
            "capacity": row["capacity"],
            "weight": row["weight"],
            "time_zone": row["time_zone"],
            "working_hours": None
            if row["working_hours"] is None
            else json.loads(row["working_hours"]),
            "active": row["active"],
            "email": row["email"],
            "slack_member_id": row["slack_member_id"],
            "open_handoffs": row["open_handoffs"],
        }
    )


async def get_rep(connection: asyncpg.Connection, rep_id: str) -> Rep | None:
    row = await connection.fetchrow(f"{_REP_WITH_LOAD} WHERE r.rep_id = $1", rep_id)
    return None if row is None else _rep(row)


async def list_reps(connection: asyncpg.Connection, team_id: str | None) -> list[Rep]:
    rows = await connection.fetch(
        f"{_REP_WITH_LOAD} WHERE $1::text IS NULL OR r.team_id = $1 ORDER BY r.rep_id", team_id
    )
    return [_rep(row) for row in rows]


async def rep_states(connection: asyncpg.Connection, team_id: str) -> list[RepState]:
    """The team's reps as routing needs them (call with the team locked)."""
    rows = await connection.fetch(f"{_REP_WITH_LOAD} WHERE r.team_id = $1", team_id)
    states = []
    for row in rows:
        hours = (
            None
            if row["working_hours"] is None
            else BusinessCalendar(
                time_zone=row["time_zone"], weekly_hours=json.loads(row["working_hours"])
            )
        )
        states.append(
            RepState(
                rep_id=row["rep_id"],
                weight=row["weight"],
                capacity=row["capacity"],
                open_handoffs=row["open_handoffs"],
                active=row["active"],
                segments=frozenset(row["segments"]),
                hours=hours,
                current_weight=row["current_weight"],
            )
        )
    return states


async def save_round_robin(connection: asyncpg.Connection, weights: Mapping[str, int]) -> None:
    await connection.executemany(
        "UPDATE reps SET current_weight = $2 WHERE rep_id = $1", list(weights.items())
    )


# --- handoffs --------------------------------------------------------------------------


def _handoff(row: asyncpg.Record) -> Handoff:
    return Handoff(
        handoff_id=row["handoff_id"],
        lead_id=row["lead_id"],
        team_id=row["team_id"],
        rep_id=row["rep_id"],
        status=row["status"],
        policy_name=row["policy_name"],
        policy=SlaPolicy.model_validate_json(row["policy"]),
        segment=row["segment"],
        country=row["country"],
        form_type=row["form_type"],
        attribution=Attribution.model_validate_json(row["attribution"]),
        profile=json.loads(row["profile"]),
        score=row["score"],
        created_at=row["created_at"],
        assigned_at=row["assigned_at"],
        at_risk_at=row["at_risk_at"],
        at_risk_fired=row["at_risk_fired"],
        due_at=row["due_at"],
        breaches=row["breaches"],
        previous_rep_ids=tuple(row["previous_rep_ids"]),
        excluded_teams=tuple(row["excluded_teams"]),
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        reject_reason=row["reject_reason"],
        score_reasons=tuple(json.loads(row["score_reasons"])),
    )


async def insert_handoff(
    connection: asyncpg.Connection,
    *,
    handoff_id: UUID,
    lead_id: UUID,
    team_id: str,
    policy_name: str,
    policy: SlaPolicy,
    segment: str,
    country: str | None,
    form_type: str | None,
    attribution: Attribution,
    profile: dict[str, Any],
    score: int,
    created_at: datetime,
    score_reasons: Sequence[dict[str, Any]] = (),
) -> Handoff | None:
    """A new queued handoff, or None when the lead already has one."""
    row = await connection.fetchrow(
        """INSERT INTO handoffs (handoff_id, lead_id, team_id, status, policy_name, policy,
                                 segment, country, form_type, attribution, profile, score,
                                 created_at, score_reasons)
           VALUES ($1, $2, $3, 'queued', $4, $5::jsonb, $6, $7, $8, $9::jsonb, $10::jsonb,
                   $11, $12, $13::jsonb)
           ON CONFLICT (lead_id) DO NOTHING
           RETURNING *""",
        handoff_id,
        lead_id,
        team_id,
        policy_name,
        policy.model_dump_json(),
        segment,
        country,
        form_type,
        attribution.model_dump_json(),
        json.dumps(profile),
        score,
        created_at,
        json.dumps(list(score_reasons)),
    )
    return None if row is None else _handoff(row)


async def get_handoff(connection: asyncpg.Connection, handoff_id: UUID) -> Handoff | None:
    row = await connection.fetchrow("SELECT * FROM handoffs WHERE handoff_id = $1", handoff_id)
    return None if row is None else _handoff(row)


async def lock_handoff(connection: asyncpg.Connection, handoff_id: UUID) -> Handoff | None:
    """The handoff, locked until the transaction ends: how every race is decided once."""
    row = await connection.fetchrow(
        "SELECT * FROM handoffs WHERE handoff_id = $1 FOR UPDATE", handoff_id
    )
    return None if row is None else _handoff(row)


async def save_assignment(
    connection: asyncpg.Connection,
    *,
    handoff_id: UUID,
    team_id: str,
    rep_id: str | None,
    status: Status,
    policy_name: str,
    policy: SlaPolicy,
    assigned_at: datetime | None,
    at_risk_at: datetime | None,
    due_at: datetime | None,
    breaches: int,
    previous_rep_ids: Sequence[str],
    excluded_teams: Sequence[str],
) -> Handoff:
    row = await connection.fetchrow(
        """UPDATE handoffs SET team_id = $2, rep_id = $3, status = $4, policy_name = $5,
               policy = $6::jsonb, assigned_at = $7, at_risk_at = $8, due_at = $9,
               at_risk_fired = false, breaches = $10, previous_rep_ids = $11,
               excluded_teams = $12, updated_at = now()
           WHERE handoff_id = $1
           RETURNING *""",
        handoff_id,
        team_id,
        rep_id,
        status,
        policy_name,
        policy.model_dump_json(),
        assigned_at,
        at_risk_at,
        due_at,
        breaches,
        list(previous_rep_ids),
        list(excluded_teams),
    )
    return _handoff(row)


async def save_decision(
    connection: asyncpg.Connection,
    *,
    handoff_id: UUID,
    status: Status,
    decided_at: datetime,
    decided_by: str,
    reject_reason: str | None,
) -> Handoff:
    row = await connection.fetchrow(
        """UPDATE handoffs SET status = $2, decided_at = $3, decided_by = $4,
               reject_reason = $5, at_risk_at = NULL, due_at = NULL, updated_at = now()
           WHERE handoff_id = $1
           RETURNING *""",
        handoff_id,
        status,
        decided_at,
        decided_by,
        reject_reason,
    )
    return _handoff(row)


async def list_handoffs(
    connection: asyncpg.Connection,
    *,
    rep_id: str | None,
    team_id: str | None,
    statuses: Sequence[str],
    limit: int,
) -> list[Handoff]:
    """A queue, soonest due first; queued (undated) ones after, oldest first."""
    rows = await connection.fetch(
        """SELECT * FROM handoffs
           WHERE ($1::text IS NULL OR rep_id = $1)
             AND ($2::text IS NULL OR team_id = $2)
             AND status = ANY($3::text[])
           ORDER BY due_at ASC NULLS LAST, created_at ASC, handoff_id
           LIMIT $4""",
        rep_id,
        team_id,
        list(statuses),
        limit,
    )
    return [_handoff(row) for row in rows]


async def mark_at_risk_fired(connection: asyncpg.Connection, handoff_id: UUID) -> None:
    await connection.execute(
        "UPDATE handoffs SET at_risk_fired = true, updated_at = now() WHERE handoff_id = $1",
        handoff_id,
    )


async def claim_breached(
    connection: asyncpg.Connection, *, now: datetime, limit: int
) -> list[Handoff]:
    """Assigned handoffs past due, locked; rows another replica holds are skipped."""
    rows = await connection.fetch(
        """SELECT * FROM handoffs WHERE status = 'assigned' AND due_at <= $1
           ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [_handoff(row) for row in rows]


async def claim_at_risk(
    connection: asyncpg.Connection, *, now: datetime, limit: int
) -> list[Handoff]:
    rows = await connection.fetch(
        """SELECT * FROM handoffs
           WHERE status = 'assigned' AND NOT at_risk_fired AND at_risk_at <= $1
             AND due_at > $1
           ORDER BY at_risk_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [_handoff(row) for row in rows]


async def claim_queued(connection: asyncpg.Connection, *, limit: int) -> list[Handoff]:
    rows = await connection.fetch(
        """SELECT * FROM handoffs WHERE status = 'queued'
           ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [_handoff(row) for row in rows]


async def open_handoffs_by_team(connection: asyncpg.Connection) -> list[tuple[str, str, int]]:
    rows = await connection.fetch(
        """SELECT team_id, status, count(*) AS n FROM handoffs
           WHERE status IN ('queued', 'assigned', 'escalated')
           GROUP BY team_id, status ORDER BY team_id, status"""
    )
    return [(row["team_id"], row["status"], row["n"]) for row in rows]


async def due_soon_by_team(
    connection: asyncpg.Connection, *, now: datetime, within: timedelta
) -> list[tuple[str, int]]:
    rows = await connection.fetch(
        """SELECT team_id, count(*) AS n FROM handoffs
           WHERE status = 'assigned' AND due_at <= $1
           GROUP BY team_id ORDER BY team_id""",
        now + within,
    )
    return [(row["team_id"], row["n"]) for row in rows]


# --- notifications ---------------------------------------------------------------------


async def contact_of(connection: asyncpg.Connection, rep_id: str) -> tuple[str | None, str | None]:
    """A rep's (email, Slack member id); (None, None) for someone not on the roster."""
    row = await connection.fetchrow(
        "SELECT email, slack_member_id FROM reps WHERE rep_id = $1", rep_id
    )
    return (None, None) if row is None else (row["email"], row["slack_member_id"])


async def enqueue_notifications(
    connection: asyncpg.Connection, rows: Sequence[Notification]
) -> None:
    """Queue notifications, delivered later by the notifier."""
    await connection.executemany(
        """INSERT INTO notifications (handoff_id, kind, channel, target, body)
           VALUES ($1, $2, $3, $4, $5::jsonb)""",
        [
            (row.handoff_id, row.kind, row.channel, row.target, json.dumps(row.facts))
            for row in rows
        ],
    )


async def claim_notifications(
    connection: asyncpg.Connection, *, now: datetime, lease: timedelta, limit: int
) -> list[asyncpg.Record]:
    """Due notifications, leased: another replica will not pick them until the lease ends."""
    rows: list[asyncpg.Record] = await connection.fetch(
        """UPDATE notifications SET attempts = attempts + 1,
               next_attempt_at = $1::timestamptz + $2::interval
           WHERE id IN (SELECT id FROM notifications
                        WHERE delivered_at IS NULL AND failed_at IS NULL
                          AND next_attempt_at <= $1
                        ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING id, handoff_id, kind, channel, target, body, attempts""",
        now,
        lease,
        limit,
    )
    return rows


async def mark_delivered(connection: asyncpg.Connection, notification_id: int) -> None:
    await connection.execute(
        "UPDATE notifications SET delivered_at = now(), last_error = NULL WHERE id = $1",
        notification_id,
    )


async def mark_attempt_failed(
    connection: asyncpg.Connection,
    notification_id: int,
    *,
    error: str,
    retry_at: datetime | None,
) -> None:
    """Schedule the next attempt, or park the notification with its reason (``retry_at``
    None): a parked one is never tried again."""
    await connection.execute(
        """UPDATE notifications SET last_error = $2,
               next_attempt_at = coalesce($3, next_attempt_at),
               failed_at = CASE WHEN $3::timestamptz IS NULL THEN now() END
           WHERE id = $1""",
        notification_id,
        error[:500],
        retry_at,
    )


async def pending_notifications(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM notifications WHERE delivered_at IS NULL AND failed_at IS NULL"
    )
    return count


async def parked_notifications(connection: asyncpg.Connection) -> list[tuple[str, int]]:
    """(channel, how many) of the notifications parked for good."""
    rows = await connection.fetch(
        """SELECT channel, count(*) AS n FROM notifications WHERE failed_at IS NOT NULL
           GROUP BY channel ORDER BY channel"""
    )
    return [(row["channel"], row["n"]) for row in rows]


# --- the inbox: what a rep or manager sees beside a handoff -------------------------


async def record_touch(
    connection: asyncpg.Connection,
    *,
    lead_id: UUID,
    submission_id: UUID,
    matched_on: str,
    form_id: str | None,
    attribution: Attribution,
    touched_at: datetime,
) -> None:
    await connection.execute(
        """INSERT INTO lead_touches (submission_id, lead_id, matched_on, form_id, attribution,
                                     touched_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (submission_id) DO NOTHING""",
        submission_id,
        lead_id,
        matched_on,
        form_id,
        attribution.model_dump_json(),
        touched_at,
    )


async def record_decision(
    connection: asyncpg.Connection,
    handoff: Handoff,
    decided_by: str,
    rejection: RejectIn | None,
    *,
    now: datetime,
    note: str | None = None,
) -> None:
    """An accept (``rejection`` None) or a reject, kept for the decider's history; the
    rejection's ``note`` as given (sealed: ``people.seal_note``)."""
    await connection.execute(
        """INSERT INTO decisions (handoff_id, team_id, decided_by, outcome, reason, note,
                                  decided_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        handoff.handoff_id,
        handoff.team_id,
        decided_by,
        "accepted" if rejection is None else "rejected",
        None if rejection is None else rejection.reason,
        note,
        now,
    )


async def record_breach(connection: asyncpg.Connection, handoff: Handoff, *, now: datetime) -> None:
    """A missed deadline, before the breach reassigns or escalates the handoff."""
    await connection.execute(
        """INSERT INTO sla_breaches (handoff_id, rep_id, due_at, breached_at)
           VALUES ($1, $2, $3, $4)""",
        handoff.handoff_id,
        handoff.rep_id,
        handoff.due_at,
        now,
    )


_INBOX_SELECT = """
    SELECT h.*, l.form_id AS lead_form_id,
           (SELECT min(b.due_at) FROM sla_breaches b
            WHERE b.handoff_id = h.handoff_id) AS first_missed_due_at,
           d.decided_by AS d_decided_by, d.outcome AS d_outcome, d.reason AS d_reason,
           d.note AS d_note, d.decided_at AS d_decided_at
    FROM handoffs h
    LEFT JOIN leads l ON l.lead_id = h.lead_id
    LEFT JOIN LATERAL (SELECT * FROM decisions
                       WHERE decisions.handoff_id = h.handoff_id
                       ORDER BY id DESC LIMIT 1) d ON true"""


def _decision(row: asyncpg.Record, handoff_id: UUID) -> DecisionRecord | None:
    if row["d_outcome"] is None:
        return None
    return DecisionRecord(
        handoff_id=handoff_id,
        decided_by=row["d_decided_by"],
        outcome=row["d_outcome"],
        reason=row["d_reason"],
        note=row["d_note"],
        decided_at=row["d_decided_at"],
    )


async def _with_touches(
    connection: asyncpg.Connection, rows: Sequence[asyncpg.Record]
) -> list[InboxHandoff]:
    handoffs = [_handoff(row) for row in rows]
    touches: dict[UUID, list[LeadTouch]] = {}
    found = await connection.fetch(
        """SELECT * FROM lead_touches WHERE lead_id = ANY($1::uuid[])
           ORDER BY touched_at DESC, submission_id""",
        [handoff.lead_id for handoff in handoffs],
    )
    for touch in found:
        touches.setdefault(touch["lead_id"], []).append(
            LeadTouch(
                touched_at=touch["touched_at"],
                matched_on=touch["matched_on"],
                form_id=touch["form_id"],
                attribution=Attribution.model_validate_json(touch["attribution"]),
            )
        )
    return [
        InboxHandoff(
            handoff=handoff,
            form_id=row["lead_form_id"],
            first_missed_due_at=row["first_missed_due_at"],
            last_decision=_decision(row, handoff.handoff_id),
            touches=tuple(touches.get(handoff.lead_id, ())),
        )
        for handoff, row in zip(handoffs, rows, strict=True)
    ]


async def inbox_handoff(connection: asyncpg.Connection, handoff_id: UUID) -> InboxHandoff | None:
    rows = await connection.fetch(f"{_INBOX_SELECT} WHERE h.handoff_id = $1", handoff_id)
    found = await _with_touches(connection, rows)
    return found[0] if found else None


async def inbox_open_handoffs(
    connection: asyncpg.Connection, *, rep_id: str | None, team_id: str | None, limit: int
) -> list[InboxHandoff]:
    """Open handoffs of a rep or a team; past due and escalated ones first, so a long
    queue never pushes them past the limit (the page orders them exactly)."""
    rows = await connection.fetch(
        f"""{_INBOX_SELECT}
            WHERE ($1::text IS NULL OR h.rep_id = $1)
              AND ($2::text IS NULL OR h.team_id = $2)
              AND h.status IN ('queued', 'assigned', 'escalated')
            ORDER BY (h.status = 'escalated' OR h.breaches > 0) DESC,
                     h.due_at ASC NULLS LAST, h.created_at, h.handoff_id
            LIMIT $3""",
        rep_id,
        team_id,
        limit,
    )
    return await _with_touches(connection, rows)


async def inbox_accepted(
    connection: asyncpg.Connection, *, rep_id: str, limit: int, offset: int
) -> list[InboxHandoff]:
    """The leads a rep holds as accepted, most recently accepted first."""
    rows = await connection.fetch(
        f"""{_INBOX_SELECT}
            WHERE h.rep_id = $1 AND h.status = 'accepted'
            ORDER BY h.decided_at DESC, h.handoff_id
            LIMIT $2 OFFSET $3""",
        rep_id,
        limit,
        offset,
    )
    return await _with_touches(connection, rows)


async def decision_history(
    connection: asyncpg.Connection,
    *,
    decided_by: str | None,
    team_id: str | None,
    limit: int,
    offset: int,
) -> list[tuple[DecisionRecord, Handoff]]:
    """Decisions by one person or in one team (neither: all), newest first."""
    rows = await connection.fetch(
        """SELECT h.*, d.decided_by AS d_decided_by, d.outcome AS d_outcome,
                  d.reason AS d_reason, d.note AS d_note, d.decided_at AS d_decided_at
           FROM decisions d JOIN handoffs h ON h.handoff_id = d.handoff_id
           WHERE ($1::text IS NULL OR d.decided_by = $1)
             AND ($2::text IS NULL OR d.team_id = $2)
           ORDER BY d.decided_at DESC, d.id DESC
           LIMIT $3 OFFSET $4""",
        decided_by,
        team_id,
        limit,
        offset,
    )
    history = []
    for row in rows:
        # The inner join gives every row a decision; _decision's None is for outer joins.
        decision = _decision(row, row["handoff_id"])
        if decision is not None:
            history.append((decision, _handoff(row)))
    return history


async def breaches_of(
    connection: asyncpg.Connection, handoff_id: UUID
) -> list[tuple[str | None, datetime]]:
    """(rep who held it, deadline missed) for each breach, oldest first."""
    rows = await connection.fetch(
        "SELECT rep_id, due_at FROM sla_breaches WHERE handoff_id = $1 ORDER BY due_at, id",
        handoff_id,
    )
    return [(row["rep_id"], row["due_at"]) for row in rows]


# --- a person's data: export and erasure (people.py, privacy) -------------------------


async def handoffs_of_lead(connection: asyncpg.Connection, lead_id: UUID) -> list[Handoff]:
    rows = await connection.fetch(
        "SELECT * FROM handoffs WHERE lead_id = $1 ORDER BY created_at", lead_id
    )
    return [_handoff(row) for row in rows]


async def decisions_of_lead(connection: asyncpg.Connection, lead_id: UUID) -> list[DecisionRecord]:
    rows = await connection.fetch(
        """SELECT d.handoff_id, d.decided_by AS d_decided_by, d.outcome AS d_outcome,
                  d.reason AS d_reason, d.note AS d_note, d.decided_at AS d_decided_at
           FROM decisions d JOIN handoffs h ON h.handoff_id = d.handoff_id
           WHERE h.lead_id = $1 ORDER BY d.decided_at, d.id""",
        lead_id,
    )
    return [decision for row in rows if (decision := _decision(row, row["handoff_id"])) is not None]


async def touches_of_lead(connection: asyncpg.Connection, lead_id: UUID) -> list[LeadTouch]:
    rows = await connection.fetch(
        "SELECT * FROM lead_touches WHERE lead_id = $1 ORDER BY touched_at, submission_id",
        lead_id,
    )
    return [
        LeadTouch(
            touched_at=row["touched_at"],
            matched_on=row["matched_on"],
            form_id=row["form_id"],
            attribution=Attribution.model_validate_json(row["attribution"]),
        )
        for row in rows
    ]


async def notifications_of_lead(
    connection: asyncpg.Connection, lead_id: UUID
) -> list[asyncpg.Record]:
    """What handoff told people about the lead's handoffs (or tried to)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        """SELECT n.handoff_id, n.kind, n.channel, n.attempts, n.created_at, n.delivered_at,
                  n.failed_at
           FROM notifications n JOIN handoffs h ON h.handoff_id = n.handoff_id
           WHERE h.lead_id = $1 ORDER BY n.created_at, n.id""",
        lead_id,
    )
    return rows


async def erase_person(
    connection: asyncpg.Connection, lead_id: UUID, personal_fields: list[str]
) -> None:
    """Blank what handoff holds of an erased person: the personal part of their lead's
    profile (sealed, or in clear from a ``.v1`` event), the reps' notes about them, and
    the notes in the rejection events of its outbox (sent or not)."""
    handoff_ids = await connection.fetch(
        """UPDATE handoffs SET profile = profile - $2::text[] WHERE lead_id = $1
           RETURNING handoff_id""",
        lead_id,
        personal_fields,
    )
    if not handoff_ids:
        return
    ids = [row["handoff_id"] for row in handoff_ids]
    await connection.execute(
        "UPDATE decisions SET note = NULL WHERE handoff_id = ANY($1::uuid[])", ids
    )
    await connection.execute(
        """UPDATE outbox SET payload = convert_to(jsonb_set(
               convert_from(payload, 'UTF8')::jsonb,
               CASE event_type WHEN 'funnel.handoff.rejected.v1' THEN '{data,note}'
                               ELSE '{data,sealed_note}' END::text[],
               'null'::jsonb)::text, 'UTF8')
           WHERE event_type IN ('funnel.handoff.rejected.v1', 'funnel.handoff.rejected.v2')
             AND event_key = ANY($1::bytea[])""",
        [str(handoff_id).encode() for handoff_id in ids],
    )
