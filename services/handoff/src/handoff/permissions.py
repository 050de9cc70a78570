"""Who may see and act on which handoff: pure rules, and the one loader that applies them.

A rep acts on their own handoffs, a manager on their team's (and on what is escalated
to them), an admin on everything. Marketing reads every handoff and acts on none: it
owns the leads, and reads what sales did with them.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from funnel_common.auth import Forbidden, Principal, Role
from funnel_common.http import NotFound
from handoff import store
from handoff.errors import HandoffConflict
from handoff.models import Handoff


def require_role(principal: Principal, *roles: Role) -> None:
    """403 unless the caller has one of ``roles``."""
    if principal.role not in roles:
        raise Forbidden(f"requires role {' or '.join(roles)}")


ACTING_ROLES: tuple[Role, ...] = ("rep", "manager", "admin")
"""The roles that decide and move handoffs; marketing only reads."""


def can_act(principal: Principal, handoff: Handoff) -> bool:
    """Rep: their own; manager: their team's (and what is escalated to them); admin: all."""
    if principal.role not in ACTING_ROLES:
        return False  # a marketing token named like a rep is still not that rep
    if principal.role == "admin":
        return True
    if handoff.rep_id == principal.subject:
        return True
    return principal.role == "manager" and principal.team == handoff.team_id


def can_read(principal: Principal, handoff: Handoff) -> bool:
    """What the caller may act on, and for marketing every handoff."""
    return principal.role == "marketing" or can_act(principal, handoff)


def queue_scope(principal: Principal, team: str | None = None) -> tuple[str | None, str | None]:
    """Whose queue the caller sees, as (rep_id, team_id) filters.

    A rep (and a manager without a team) their own, a manager their team's, an admin and
    marketing all or the one ``team`` asked for.
    """
    if principal.role == "rep" or (principal.role == "manager" and principal.team is None):
        return principal.subject, None
    if principal.role == "manager":
        return None, principal.team
    return None, team


async def load_for(
    connection: asyncpg.Connection, handoff_id: UUID, principal: Principal, *, lock: bool
) -> Handoff:
    """The handoff if the caller may act on it (``lock``) or read it: 404 unknown, 403 not
    theirs, 409 taken away.

    Only acting takes the lock: with it the row stays locked until the transaction ends,
    so a rep's accept, a manager's reassign and the SLA scanner on another replica are
    serialised on it, and the first decides and the others see the new state.
    """
    handoff = await (store.lock_handoff if lock else store.get_handoff)(connection, handoff_id)
    if handoff is None:
        raise NotFound(f"no handoff {handoff_id}")
    if (can_act if lock else can_read)(principal, handoff):
        return handoff
    if principal.role == "rep" and principal.subject in handoff.previous_rep_ids:
        raise HandoffConflict(
            "the handoff was reassigned away from you",
            current_status=handoff.status,
            reason="reassigned",
        )
    raise Forbidden("this handoff is not yours")
