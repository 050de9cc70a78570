"""What a deadline does when it falls due: at risk, breach (reassign or escalate), and
the retry of queued handoffs. Called by the scanner with the handoff row locked."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from handoff import announce, assignment, store
from handoff.models import Handoff, Team
from handoff.routing import UNROUTED_TEAM


async def fire_at_risk(connection: asyncpg.Connection, handoff: Handoff, *, now: datetime) -> None:
    """Once per assignment, after the policy's at-risk share of the window."""
    await store.mark_at_risk_fired(connection, handoff.handoff_id)
    team = await store.get_team(connection, handoff.team_id)
    await announce.emit(
        connection, handoff, team, [announce.at_risk(handoff, now)], ["at_risk"], now=now
    )


async def fire_breach(
    connection: asyncpg.Connection, handoff: Handoff, *, now: datetime
) -> Handoff:
    """Breached: say so, then reassign to the next eligible rep or escalate to the manager."""
    breached = announce.breached(handoff, now)
    await store.record_breach(connection, handoff, now=now)
    breaches = handoff.breaches + 1
    previous = (*handoff.previous_rep_ids, *([handoff.rep_id] if handoff.rep_id else []))
    plan = await assignment.plan(
        connection, handoff, team_id=handoff.team_id, now=now, exclude_reps=frozenset(previous)
    )
    if plan.choice is not None and breaches <= handoff.policy.on_breach.reassign_up_to:
        after = await assignment.apply_plan(
            connection, handoff, plan, now=now, previous_rep_ids=previous, breaches=breaches
        )
        moved = announce.reassigned(handoff, after, "sla_breach", now)
        await announce.emit(connection, handoff, plan.team, [breached], ["breached"], now=now)
        await announce.emit(connection, after, plan.team, [moved], ["assigned"], now=now)
        return after
    after = await _escalate(connection, handoff, plan.team, previous=previous, breaches=breaches)
    escalated = announce.reassigned(handoff, after, "escalation", now)
    await announce.emit(connection, handoff, plan.team, [breached], ["breached"], now=now)
    await announce.emit(connection, after, plan.team, [escalated], ["escalated"], now=now)
    return after


async def _escalate(
    connection: asyncpg.Connection,
    handoff: Handoff,
    team: Team | None,
    *,
    previous: tuple[str, ...],
    breaches: int,
) -> Handoff:
    """To the team's manager, with no further deadline: a person now owns the exception."""
    return await store.save_assignment(
        connection,
        handoff_id=handoff.handoff_id,
        team_id=handoff.team_id,
        rep_id=team.manager_id if team is not None else None,
        status="escalated",
        policy_name=handoff.policy_name,
        policy=handoff.policy,
        assigned_at=handoff.assigned_at,
        at_risk_at=None,
        due_at=None,
        breaches=breaches,
        previous_rep_ids=previous,
        excluded_teams=handoff.excluded_teams,
    )


async def drain_queue(connection: asyncpg.Connection, handoff: Handoff, *, now: datetime) -> bool:
    """Try again to assign a queued handoff; True when a rep took it."""
    team_id = handoff.team_id
    if team_id == UNROUTED_TEAM:
        # Teams may have been set up since: route the lead again.
        team_id = await assignment.route_team(connection, handoff, exclude=handoff.excluded_teams)
        if team_id == UNROUTED_TEAM:
            return False
    plan = await assignment.plan(
        connection,
        handoff,
        team_id=team_id,
        now=now,
        exclude_reps=frozenset(handoff.previous_rep_ids),
    )
    if plan.choice is None:
        return False
    after = await assignment.apply_plan(connection, handoff, plan, now=now)
    await announce.emit(
        connection, after, plan.team, [announce.assigned(after, now)], ["assigned"], now=now
    )
    return True
