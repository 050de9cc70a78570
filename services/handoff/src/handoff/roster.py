"""Changing the roster (reps with their working hours, teams, SLA policies), audited.

Every change that changes something is an event on ``funnel.roster`` written in its own
transaction: who changed it (the token's subject and role) and each field before and
after, so the roster has the same audit trail as the handoffs. A PUT that changes
nothing says nothing. Contact details and webhook URLs are named as changed, with their
values left out: the topic is read widely, and those are personal data or secrets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from funnel_common import outbox
from funnel_common.auth import Forbidden, Principal
from funnel_common.events import (
    FieldChange,
    RepChanged,
    RepChangedData,
    SlaPolicyChanged,
    SlaPolicyChangedData,
    TeamChanged,
    TeamChangedData,
)
from handoff import SERVICE, store
from handoff.models import Rep, RepIn, Team, TeamIn
from handoff.permissions import require_role
from handoff.sla import SlaPolicy

_WITHHELD = frozenset({"email", "slack_member_id", "manager_email", "manager_slack_member_id"})
_WITHHELD_IN_TEAMS = _WITHHELD | {"webhooks"}


def changes(
    before: BaseModel | None, after: BaseModel, *, withheld: frozenset[str] = _WITHHELD
) -> list[FieldChange]:
    """The fields of ``after``'s model whose value differs from ``before`` (a stored
    entry, which may have more fields; None for a new entry, where every field counts),
    withheld fields named without their values."""
    fields = type(after).model_fields
    old: dict[str, Any] = before.model_dump(mode="json", include=set(fields)) if before else {}
    new = after.model_dump(mode="json")
    found = []
    for field in fields:
        if before is not None and old.get(field) == new[field]:
            continue
        if field in withheld:
            found.append(FieldChange(field=field))
        else:
            found.append(FieldChange(field=field, before=old.get(field), after=new[field]))
    return found


async def save_rep(
    connection: asyncpg.Connection, rep_id: str, body: RepIn, principal: Principal, *, now: datetime
) -> Rep:
    """Add or change a rep: an admin any, a manager only reps of their own team."""
    require_role(principal, "admin", "manager")
    before = await store.get_rep(connection, rep_id)
    if principal.role == "manager":
        teams = {body.team_id} | ({before.team_id} if before else set())
        if teams != {principal.team}:
            raise Forbidden("a manager changes only reps of their own team")
    found = changes(before, body)
    saved = await store.upsert_rep(connection, rep_id, body)
    if found:
        data = RepChangedData(
            rep_id=rep_id,
            team=body.team_id,
            changed_by=principal.subject[:80],
            changed_by_role=principal.role,
            created=before is None,
            changes=found,
        )
        await outbox.enqueue(
            connection, RepChanged.new(source=SERVICE, subject=rep_id, time=now, data=data)
        )
    return saved


async def save_team(
    connection: asyncpg.Connection,
    team_id: str,
    body: TeamIn,
    principal: Principal,
    *,
    now: datetime,
) -> Team:
    """Add or change a team (admins only)."""
    require_role(principal, "admin")
    before = await store.get_team(connection, team_id)
    found = changes(before, body, withheld=_WITHHELD_IN_TEAMS)
    saved = await store.upsert_team(connection, team_id, body)
    if found:
        data = TeamChangedData(
            team=team_id,
            changed_by=principal.subject[:80],
            changed_by_role=principal.role,
            created=before is None,
            changes=found,
        )
        await outbox.enqueue(
            connection, TeamChanged.new(source=SERVICE, subject=team_id, time=now, data=data)
        )
    return saved


async def save_policy(
    connection: asyncpg.Connection,
    name: str,
    body: SlaPolicy,
    principal: Principal,
    *,
    now: datetime,
) -> SlaPolicy:
    """Add or change an SLA policy (admins only); handoffs already assigned keep theirs."""
    require_role(principal, "admin")
    before = await store.get_policy(connection, name)
    found = changes(before, body)
    await store.upsert_policy(connection, name, body)
    if found:
        data = SlaPolicyChangedData(
            policy=name,
            changed_by=principal.subject[:80],
            changed_by_role=principal.role,
            created=before is None,
            changes=found,
        )
        await outbox.enqueue(
            connection, SlaPolicyChanged.new(source=SERVICE, subject=name, time=now, data=data)
        )
    return body
