"""Where a handoff goes: load the inputs of a routing decision, store its outcome.

The decisions themselves are pure (routing.py picks the team and the rep, sla.py the
deadlines); this module reads what they need and writes what they chose. Routing into
a team locks the team row, so two handoffs routed at once cannot both take a rep's
last unit of capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

import asyncpg

from funnel_common.events import LeadQualified, LeadQualifiedV2
from handoff import announce, store
from handoff.models import Handoff, Team
from handoff.routing import UNROUTED_TEAM, RepChoice, choose_rep, choose_team, segment_of
from handoff.sla import DEFAULT_POLICY, DEFAULT_POLICY_NAME, SlaPolicy, deadlines


async def policy_for(
    connection: asyncpg.Connection, team: Team | None, form_type: str | None
) -> tuple[str, SlaPolicy]:
    """The team's policy for this form type (a demo request can have a tighter SLA)."""
    name = DEFAULT_POLICY_NAME
    if team is not None:
        name = team.form_type_policies.get(form_type or "", team.sla_policy)
    policy = await store.get_policy(connection, name)
    if policy is None:
        # A policy that was named but never defined falls back visibly to the default.
        return DEFAULT_POLICY_NAME, await store.get_policy(
            connection, DEFAULT_POLICY_NAME
        ) or DEFAULT_POLICY
    return name, policy


@dataclass(frozen=True)
class Plan:
    """A routing decision: the team (None: unrouted), its policy, and the rep if any."""

    team: Team | None
    team_id: str
    policy_name: str
    policy: SlaPolicy
    choice: RepChoice | None


async def plan(
    connection: asyncpg.Connection,
    handoff: Handoff,
    *,
    team_id: str,
    now: datetime,
    exclude_reps: frozenset[str],
) -> Plan:
    """Lock the team and choose among its reps eligible now."""
    team = None if team_id == UNROUTED_TEAM else await store.lock_team(connection, team_id)
    if team is None:
        team_id = UNROUTED_TEAM
    policy_name, policy = await policy_for(connection, team, handoff.form_type)
    choice = None
    if team is not None:
        reps = await store.rep_states(connection, team_id)
        choice = choose_rep(reps, segment=handoff.segment, now=now, exclude=exclude_reps)
    return Plan(team, team_id, policy_name, policy, choice)


async def apply_plan(
    connection: asyncpg.Connection,
    handoff: Handoff,
    plan: Plan,
    *,
    now: datetime,
    previous_rep_ids: tuple[str, ...] | None = None,
    excluded_teams: tuple[str, ...] | None = None,
    breaches: int | None = None,
) -> Handoff:
    """Store the plan: assigned with fresh deadlines, or queued in the team."""
    rep_id = plan.choice.rep_id if plan.choice else None
    due = deadlines(plan.policy, now) if rep_id else None
    if plan.choice is not None:
        await store.save_round_robin(connection, plan.choice.current_weights)
    return await store.save_assignment(
        connection,
        handoff_id=handoff.handoff_id,
        team_id=plan.team_id,
        rep_id=rep_id,
        status="assigned" if rep_id else "queued",
        policy_name=plan.policy_name,
        policy=plan.policy,
        assigned_at=now if rep_id else None,
        at_risk_at=due.at_risk_at if due else None,
        due_at=due.due_at if due else None,
        breaches=handoff.breaches if breaches is None else breaches,
        previous_rep_ids=handoff.previous_rep_ids if previous_rep_ids is None else previous_rep_ids,
        excluded_teams=handoff.excluded_teams if excluded_teams is None else excluded_teams,
    )


async def route_team(
    connection: asyncpg.Connection, handoff: Handoff, *, exclude: tuple[str, ...] = ()
) -> str:
    """The team whose rules take this lead now, or the unrouted queue."""
    rules = await store.team_rules(connection)
    team_id = choose_team(
        rules, segment=handoff.segment, country=handoff.country, exclude=frozenset(exclude)
    )
    return team_id or UNROUTED_TEAM


async def create_from_lead(
    connection: asyncpg.Connection, event: LeadQualified | LeadQualifiedV2, *, now: datetime
) -> Handoff | None:
    """A qualified lead becomes a handoff, assigned or waiting in its team's queue; its
    profile is kept as the event carries it (``.v2``: the personal part sealed).

    None when the lead already has one: a re-qualification changes nothing.
    """
    lead = event.data
    segment = segment_of(lead.profile.company_size)
    team_id = (
        choose_team(
            await store.team_rules(connection), segment=segment, country=lead.profile.country
        )
        or UNROUTED_TEAM
    )
    created = await store.insert_handoff(
        connection,
        handoff_id=uuid4(),
        lead_id=lead.lead_id,
        team_id=team_id,
        policy_name=DEFAULT_POLICY_NAME,
        policy=DEFAULT_POLICY,
        segment=segment,
        country=lead.profile.country,
        form_type=lead.form_type,
        attribution=lead.attribution,
        profile=lead.profile.model_dump(mode="json"),
        score=lead.score,
        created_at=now,
        score_reasons=[reason.model_dump(mode="json") for reason in lead.reasons],
    )
    if created is None:
        return None
    chosen = await plan(connection, created, team_id=team_id, now=now, exclude_reps=frozenset())
    handoff = await apply_plan(connection, created, chosen, now=now)
    await announce.emit(
        connection,
        handoff,
        chosen.team,
        [announce.assigned(handoff, now)],
        ["assigned"] if handoff.rep_id else [],
        now=now,
    )
    return handoff
