"""People deciding: a rep accepts or rejects, a manager reassigns. One transaction each.

Each decision locks the handoff row first (:func:`permissions.load_for`), so two
contenders for the same handoff (a rep's accept, a manager's reassign, the SLA scanner
on another replica) are serialised: the first decides, the others see the new state
and get a :class:`HandoffConflict`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg

from funnel_common import outbox
from funnel_common.auth import Forbidden, Principal
from funnel_common.personal import Keyring
from handoff import announce, assignment, people, store
from handoff.errors import HandoffConflict, UnknownRep
from handoff.models import Handoff, RejectIn, Status
from handoff.permissions import ACTING_ROLES, load_for, require_role
from handoff.routing import RepChoice
from handoff.sla import business_seconds_between


class Decided(NamedTuple):
    """A decision's outcome: the handoff after it, and how long the decision took."""

    handoff: Handoff
    business_seconds: int
    within_sla: bool


_WHY_NOT: dict[Status, str] = {
    "accepted": "it was already accepted",
    "rejected": "it was already rejected",
    "queued": "it waits in the team queue with no rep; reassign it first",
    "assigned": "it is assigned",
    "escalated": "it was escalated",
}


def _require_open(handoff: Handoff, *, allowed: tuple[Status, ...], action: str) -> None:
    if handoff.status not in allowed:
        raise HandoffConflict(
            f"cannot {action}: {_WHY_NOT[handoff.status]}",
            current_status=handoff.status,
            reason=handoff.status,
        )


def _timing(handoff: Handoff, now: datetime) -> tuple[int, bool]:
    seconds = business_seconds_between(handoff.policy.calendar, handoff.created_at, now)
    within = handoff.breaches == 0 and (handoff.due_at is None or now <= handoff.due_at)
    return seconds, within


async def accept(
    connection: asyncpg.Connection, handoff_id: UUID, principal: Principal, *, now: datetime
) -> Decided:
    require_role(principal, *ACTING_ROLES)
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
    event = announce.accepted(handoff, principal, seconds=seconds, within=within, now=now)
    await outbox.enqueue(connection, event)
    return Decided(after, seconds, within)


async def reject(
    connection: asyncpg.Connection,
    handoff_id: UUID,
    principal: Principal,
    body: RejectIn,
    *,
    now: datetime,
    keyring: Keyring,
) -> Decided:
    require_role(principal, *ACTING_ROLES)
    handoff = await load_for(connection, handoff_id, principal, lock=True)
    _require_open(handoff, allowed=("assigned", "escalated"), action="reject")
    seconds, within = _timing(handoff, now)
    # The note is about the lead: kept and sent only sealed with the lead's key.
    note = await people.seal_note(connection, keyring, handoff, body.note)
    await store.record_decision(
        connection, handoff, principal.subject, body, now=now, note=note.stored
    )
    event = announce.rejected(
        handoff,
        principal,
        reason=body.reason,
        sealed_note=note.sent,
        seconds=seconds,
        within=within,
        now=now,
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
        return Decided(after, seconds, within)
    # Wrong territory ends nothing: the lead is routed again, away from this team.
    excluded = (*handoff.excluded_teams, handoff.team_id)
    team_id = await assignment.route_team(connection, handoff, exclude=excluded)
    previous = (*handoff.previous_rep_ids, *([handoff.rep_id] if handoff.rep_id else []))
    plan = await assignment.plan(
        connection, handoff, team_id=team_id, now=now, exclude_reps=frozenset(previous)
    )
    after = await assignment.apply_plan(
        connection, handoff, plan, now=now, previous_rep_ids=previous, excluded_teams=excluded
    )
    await announce.emit(
        connection,
        after,
        plan.team,
        [event, announce.reassigned(handoff, after, "wrong_territory", now)],
        ["assigned"] if after.rep_id else [],
        now=now,
    )
    return Decided(after, seconds, within)


async def reassign(
    connection: asyncpg.Connection,
    handoff_id: UUID,
    principal: Principal,
    rep_id: str | None,
    *,
    now: datetime,
) -> Handoff:
    """A manager's (or admin's) move: to a named rep, or to the team's next eligible rep."""
    require_role(principal, "manager", "admin")
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
        policy_name, policy = await assignment.policy_for(connection, team, handoff.form_type)
        plan = assignment.Plan(team, rep.team_id, policy_name, policy, RepChoice(rep_id, {}))
    else:
        plan = await assignment.plan(
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
    after = await assignment.apply_plan(
        connection, handoff, plan, now=now, previous_rep_ids=previous
    )
    await announce.emit(
        connection,
        after,
        plan.team,
        [announce.reassigned(handoff, after, "manager", now, by=principal)],
        ["assigned"],
        now=now,
    )
    return after
