"""What happens to a handoff: create, assign, decide, breach. One connection, one transaction.

Each flow locks the handoff row first (then, when routing, the team row), so two
contenders for the same handoff (a rep's accept, a manager's reassign, the SLA scanner
on another replica) are serialised: the first decides, the others see the new state
and get a :class:`Conflict`. Decisions themselves are pure (routing.py, sla.py); this
module loads their inputs and writes their outcome, events and notifications together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from funnel_common import outbox
from funnel_common.auth import Forbidden, Principal
from funnel_common.events import (
    Envelope,
    HandoffAccepted,
    HandoffAssigned,
    HandoffReassigned,
    HandoffRejected,
    HandoffSlaAtRisk,
    HandoffSlaBreached,
    LeadQualified,
)
from funnel_common.http import Conflict, DomainError, NotFound
from handoff import store
from handoff.models import Handoff, NotificationKind, RejectIn, Status, Team
from handoff.notify import notifications_for
from handoff.routing import UNROUTED_TEAM, RepChoice, choose_rep, choose_team, segment_of
from handoff.sla import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_NAME,
    SlaPolicy,
    business_seconds_between,
    deadlines,
)

SERVICE = "handoff"


class HandoffConflict(Conflict):
    slug = "handoff-conflict"
    title = "The handoff is no longer in a state that allows this"


class UnknownRep(DomainError):
    status = 422
    slug = "unknown-rep"
    title = "No such rep on the roster"


# --- loading the inputs of a decision -------------------------------------------------


async def _policy_for(
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
    team: Team | None
    team_id: str
    policy_name: str
    policy: SlaPolicy
    choice: RepChoice | None


async def _plan(
    connection: asyncpg.Connection,
    handoff: Handoff,
    *,
    team_id: str,
    now: datetime,
    exclude_reps: frozenset[str],
) -> Plan:
    team = None if team_id == UNROUTED_TEAM else await store.lock_team(connection, team_id)
    if team is None:
        team_id = UNROUTED_TEAM
    policy_name, policy = await _policy_for(connection, team, handoff.form_type)
    choice = None
    if team is not None:
        reps = await store.rep_states(connection, team_id)
        choice = choose_rep(reps, segment=handoff.segment, now=now, exclude=exclude_reps)
    return Plan(team, team_id, policy_name, policy, choice)


async def _apply_plan(
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


async def _emit(
    connection: asyncpg.Connection,
    handoff: Handoff,
    team: Team | None,
    events: list[Envelope],
    notify: list[NotificationKind],
    *,
    now: datetime,
) -> None:
    await outbox.enqueue(connection, *events)
    if team is not None and notify:
        rows = [row for kind in notify for row in notifications_for(team, handoff, kind, now=now)]
        if rows:
            await store.enqueue_notifications(connection, rows)


def _assigned_event(handoff: Handoff, now: datetime) -> HandoffAssigned:
    return HandoffAssigned.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data={
            "handoff_id": handoff.handoff_id,
            "lead_id": handoff.lead_id,
            "team": handoff.team_id,
            "assignee_rep_id": handoff.rep_id,
            "assigned_at": handoff.assigned_at or now,
            "due_at": handoff.due_at,
            "policy": handoff.policy_name,
            "attribution": handoff.attribution,
        },
    )


def _reassigned_event(
    before: Handoff, after: Handoff, reason: str, now: datetime
) -> HandoffReassigned:
    return HandoffReassigned.new(
        source=SERVICE,
        subject=after.handoff_id,
        time=now,
        data={
            "handoff_id": after.handoff_id,
            "lead_id": after.lead_id,
            "team": after.team_id,
            "from_rep_id": before.rep_id,
            "to_rep_id": after.rep_id,
            "reason": reason,
            "due_at": after.due_at,
        },
    )


# --- events in ------------------------------------------------------------------------


async def create_from_lead(
    connection: asyncpg.Connection, event: LeadQualified, *, now: datetime
) -> Handoff | None:
    """A qualified lead becomes a handoff, assigned or waiting in its team's queue."""
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
        return None  # this lead was already handed off; a re-qualification changes nothing
    plan = await _plan(connection, created, team_id=team_id, now=now, exclude_reps=frozenset())
    handoff = await _apply_plan(connection, created, plan, now=now)
    await _emit(
        connection,
        handoff,
        plan.team,
        [_assigned_event(handoff, now)],
        ["assigned"] if handoff.rep_id else [],
        now=now,
    )
    return handoff


# --- timers (called by the scanner with the row locked) --------------------------------


def _deadline_data(handoff: Handoff) -> dict[str, object]:
    """What the at-risk and breach events say about the deadline."""
    return {
        "handoff_id": handoff.handoff_id,
        "lead_id": handoff.lead_id,
        "team": handoff.team_id,
        "rep_id": handoff.rep_id,
        "due_at": handoff.due_at,
        "policy": handoff.policy_name,
    }


async def fire_at_risk(connection: asyncpg.Connection, handoff: Handoff, *, now: datetime) -> None:
    await store.mark_at_risk_fired(connection, handoff.handoff_id)
    assert handoff.due_at is not None
    event = HandoffSlaAtRisk.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=_deadline_data(handoff),
    )
    team = await store.get_team(connection, handoff.team_id)
    await _emit(connection, handoff, team, [event], ["at_risk"], now=now)


async def fire_breach(
    connection: asyncpg.Connection, handoff: Handoff, *, now: datetime
) -> Handoff:
    """Breached: say so, then reassign to the next eligible rep or escalate to the manager."""
    assert handoff.due_at is not None
    assert handoff.rep_id is not None
    breached = HandoffSlaBreached.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=_deadline_data(handoff),
    )
    await store.record_breach(connection, handoff, now=now)
    breaches = handoff.breaches + 1
    previous = (*handoff.previous_rep_ids, handoff.rep_id)
    plan = await _plan(
        connection, handoff, team_id=handoff.team_id, now=now, exclude_reps=frozenset(previous)
    )
    if plan.choice is not None and breaches <= handoff.policy.on_breach.reassign_up_to:
        after = await _apply_plan(
            connection, handoff, plan, now=now, previous_rep_ids=previous, breaches=breaches
        )
        events: list[Envelope] = [breached, _reassigned_event(handoff, after, "sla_breach", now)]
        await _emit(connection, handoff, plan.team, events[:1], ["breached"], now=now)
        await _emit(connection, after, plan.team, events[1:], ["assigned"], now=now)
        return after
    after = await _escalate(connection, handoff, plan.team, previous=previous, breaches=breaches)
    await _emit(connection, handoff, plan.team, [breached], ["breached"], now=now)
    await _emit(
        connection,
        after,
        plan.team,
        [_reassigned_event(handoff, after, "escalation", now)],
        ["escalated"],
        now=now,
    )
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
        team_id = (
            choose_team(
                await store.team_rules(connection),
                segment=handoff.segment,
                country=handoff.country,
                exclude=frozenset(handoff.excluded_teams),
            )
            or UNROUTED_TEAM
        )
        if team_id == UNROUTED_TEAM:
            return False
    plan = await _plan(
        connection,
        handoff,
        team_id=team_id,
        now=now,
        exclude_reps=frozenset(handoff.previous_rep_ids),
    )
    if plan.choice is None:
        return False
    after = await _apply_plan(connection, handoff, plan, now=now)
    await _emit(connection, after, plan.team, [_assigned_event(after, now)], ["assigned"], now=now)
    return True


# --- people deciding -----------------------------------------------------------------


def can_see(principal: Principal, handoff: Handoff) -> bool:
    """Rep: their own; manager: their team's (and what is escalated to them); admin: all."""
    if principal.role == "admin":
        return True
    if handoff.rep_id == principal.subject:
        return True
    return principal.role == "manager" and principal.team == handoff.team_id


def queue_scope(principal: Principal, team: str | None = None) -> tuple[str | None, str | None]:
    """Whose queue the caller sees, as (rep_id, team_id) filters.

    A rep (and a manager without a team) their own, a manager their team's, an admin all
    or the one ``team`` asked for.
    """
    if principal.role == "rep" or (principal.role == "manager" and principal.team is None):
        return principal.subject, None
    if principal.role == "manager":
        return None, principal.team
    return None, team


async def load_for(
    connection: asyncpg.Connection, handoff_id: UUID, principal: Principal, *, lock: bool
) -> Handoff:
    """The handoff if the caller may act on it: 404 unknown, 403 not theirs, 409 taken away."""
    handoff = await (store.lock_handoff if lock else store.get_handoff)(connection, handoff_id)
    if handoff is None:
        raise NotFound(f"no handoff {handoff_id}")
    if can_see(principal, handoff):
        return handoff
    if principal.role == "rep" and principal.subject in handoff.previous_rep_ids:
        raise HandoffConflict(
            "the handoff was reassigned away from you",
            current_status=handoff.status,
            reason="reassigned",
        )
    raise Forbidden("this handoff is not yours")


def _require_open(handoff: Handoff, *, allowed: tuple[Status, ...], action: str) -> None:
    if handoff.status in allowed:
        return
    explanations = {
        "accepted": "it was already accepted",
        "rejected": "it was already rejected",
        "queued": "it waits in the team queue with no rep; reassign it first",
        "assigned": "it is assigned",
        "escalated": "it was escalated",
    }
    raise HandoffConflict(
        f"cannot {action}: {explanations[handoff.status]}",
        current_status=handoff.status,
        reason=handoff.status,
    )


def _timing(handoff: Handoff, now: datetime) -> tuple[int, bool]:
    seconds = business_seconds_between(handoff.policy.calendar, handoff.created_at, now)
    within = handoff.breaches == 0 and (handoff.due_at is None or now <= handoff.due_at)
    return seconds, within


async def accept(
    connection: asyncpg.Connection, handoff_id: UUID, principal: Principal, *, now: datetime
) -> tuple[Handoff, int, bool]:
    handoff = await load_for(connection, handoff_id, principal, lock=True)
    _require_open(handoff, allowed=("assigned", "escalated"), action="accept")
    seconds, within = _timing(handoff, now)
    await store.record_decision(connection, handoff, principal.subject, None, now=now)
    after = await store.save_decision(
        connection,
        handoff_id=handoff_id,
        status="accepted",
        decided_at=now,
        decided_by=principal.subject,
        reject_reason=None,
    )
    event = HandoffAccepted.new(
        source=SERVICE,
        subject=handoff_id,
        time=now,
        data={
            "handoff_id": handoff_id,
            "lead_id": handoff.lead_id,
            "rep_id": handoff.rep_id or principal.subject,
            "team": handoff.team_id,
            "business_seconds_to_decision": seconds,
            "within_sla": within,
            "attribution": handoff.attribution,
        },
    )
    await outbox.enqueue(connection, event)
    return after, seconds, within


async def reject(
    connection: asyncpg.Connection,
    handoff_id: UUID,
    principal: Principal,
    body: RejectIn,
    *,
    now: datetime,
) -> tuple[Handoff, int, bool]:
    handoff = await load_for(connection, handoff_id, principal, lock=True)
    _require_open(handoff, allowed=("assigned", "escalated"), action="reject")
    seconds, within = _timing(handoff, now)
    await store.record_decision(connection, handoff, principal.subject, body, now=now)
    event = HandoffRejected.new(
        source=SERVICE,
        subject=handoff_id,
        time=now,
        data={
            "handoff_id": handoff_id,
            "lead_id": handoff.lead_id,
            "rep_id": handoff.rep_id or principal.subject,
            "team": handoff.team_id,
            "reason": body.reason,
            "note": body.note,
            "business_seconds_to_decision": seconds,
            "within_sla": within,
            "attribution": handoff.attribution,
        },
    )
    if body.reason != "wrong_territory":
        after = await store.save_decision(
            connection,
            handoff_id=handoff_id,
            status="rejected",
            decided_at=now,
            decided_by=principal.subject,
            reject_reason=body.reason,
        )
        await outbox.enqueue(connection, event)
        return after, seconds, within
    # Wrong territory ends nothing: the lead is routed again, away from this team.
    excluded = (*handoff.excluded_teams, handoff.team_id)
    team_id = (
        choose_team(
            await store.team_rules(connection),
            segment=handoff.segment,
            country=handoff.country,
            exclude=frozenset(excluded),
        )
        or UNROUTED_TEAM
    )
    previous = (*handoff.previous_rep_ids, *([handoff.rep_id] if handoff.rep_id else []))
    plan = await _plan(
        connection, handoff, team_id=team_id, now=now, exclude_reps=frozenset(previous)
    )
    after = await _apply_plan(
        connection, handoff, plan, now=now, previous_rep_ids=previous, excluded_teams=excluded
    )
    await _emit(
        connection,
        after,
        plan.team,
        [event, _reassigned_event(handoff, after, "wrong_territory", now)],
        ["assigned"] if after.rep_id else [],
        now=now,
    )
    return after, seconds, within


async def reassign(
    connection: asyncpg.Connection,
    handoff_id: UUID,
    principal: Principal,
    rep_id: str | None,
    *,
    now: datetime,
) -> Handoff:
    """A manager's (or admin's) move: to a named rep, or to the team's next eligible rep."""
    if principal.role not in ("manager", "admin"):
        raise Forbidden("only a manager or an admin may reassign")
    handoff = await load_for(connection, handoff_id, principal, lock=True)
    if principal.role == "manager" and principal.team != handoff.team_id:
        raise Forbidden("this handoff is not in your team")
    _require_open(handoff, allowed=("queued", "assigned", "escalated"), action="reassign")
    previous = (*handoff.previous_rep_ids, *([handoff.rep_id] if handoff.rep_id else []))
    if rep_id is not None:
        rep = await store.get_rep(connection, rep_id)
        if rep is None:
            raise UnknownRep(f"no rep {rep_id}", field="rep_id")
        if principal.role == "manager" and rep.team_id != principal.team:
            raise Forbidden("that rep is not in your team")
        if rep_id == handoff.rep_id:
            raise HandoffConflict(
                "the handoff is already with that rep", current_status=handoff.status
            )
        team = await store.lock_team(connection, rep.team_id)
        policy_name, policy = await _policy_for(connection, team, handoff.form_type)
        plan = Plan(team, rep.team_id, policy_name, policy, RepChoice(rep_id, {}))
    else:
        plan = await _plan(
            connection,
            handoff,
            team_id=handoff.team_id,
            now=now,
            exclude_reps=frozenset(p for p in [handoff.rep_id] if p),
        )
        if plan.choice is None:
            raise HandoffConflict(
                "no other eligible rep in the team right now; name one with rep_id",
                current_status=handoff.status,
                reason="no_eligible_rep",
            )
    after = await _apply_plan(connection, handoff, plan, now=now, previous_rep_ids=previous)
    await _emit(
        connection,
        after,
        plan.team,
        [_reassigned_event(handoff, after, "manager", now)],
        ["assigned"],
        now=now,
    )
    return after
