"""What handoff tells others about a change: its events (built from the catalogue's typed
``*Data`` models) and the notifications for the people involved, written in the
transaction of the change itself."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from funnel_common import outbox
from funnel_common.auth import Principal
from funnel_common.events import (
    Envelope,
    HandoffAccepted,
    HandoffAcceptedData,
    HandoffAssigned,
    HandoffAssignedData,
    HandoffReassigned,
    HandoffReassignedData,
    HandoffRejectedV2,
    HandoffRejectedV2Data,
    HandoffSlaAtRisk,
    HandoffSlaAtRiskData,
    HandoffSlaBreached,
    HandoffSlaBreachedData,
    ReassignReason,
    RejectionReason,
)
from handoff import SERVICE, store
from handoff.models import Handoff, NotificationKind, Team
from handoff.notifications import Person, notifications_for


class NoDeadline(ValueError):
    """A deadline event for a handoff that has no deadline: a bug upstream, never input."""


def assigned(handoff: Handoff, now: datetime) -> HandoffAssigned:
    """Assigned to a rep, or (``assignee_rep_id`` None) queued in the team."""
    return HandoffAssigned.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=HandoffAssignedData(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            team=handoff.team_id,
            assignee_rep_id=handoff.rep_id,
            assigned_at=handoff.assigned_at or now,
            due_at=handoff.due_at,
            policy=handoff.policy_name,
            attribution=handoff.attribution,
        ),
    )


def reassigned(
    before: Handoff,
    after: Handoff,
    reason: ReassignReason,
    now: datetime,
    *,
    by: Principal | None = None,
) -> HandoffReassigned:
    """Moved from one holder to another; ``by`` is the manager or admin who moved it."""
    return HandoffReassigned.new(
        source=SERVICE,
        subject=after.handoff_id,
        time=now,
        data=HandoffReassignedData(
            handoff_id=after.handoff_id,
            lead_id=after.lead_id,
            team=after.team_id,
            from_rep_id=before.rep_id,
            to_rep_id=after.rep_id,
            reason=reason,
            due_at=after.due_at,
            by=by.subject if by is not None else None,
        ),
    )


def _due_at(handoff: Handoff) -> datetime:
    if handoff.due_at is None:
        raise NoDeadline(f"handoff {handoff.handoff_id} has no deadline")
    return handoff.due_at


def at_risk(handoff: Handoff, now: datetime) -> HandoffSlaAtRisk:
    return HandoffSlaAtRisk.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=HandoffSlaAtRiskData(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            team=handoff.team_id,
            rep_id=handoff.rep_id,
            due_at=_due_at(handoff),
            policy=handoff.policy_name,
        ),
    )


def breached(handoff: Handoff, now: datetime) -> HandoffSlaBreached:
    return HandoffSlaBreached.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=HandoffSlaBreachedData(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            team=handoff.team_id,
            rep_id=handoff.rep_id,
            due_at=_due_at(handoff),
            policy=handoff.policy_name,
        ),
    )


def accepted(
    handoff: Handoff, principal: Principal, *, seconds: int, within: bool, now: datetime
) -> HandoffAccepted:
    return HandoffAccepted.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=HandoffAcceptedData(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            rep_id=handoff.rep_id or principal.subject,
            team=handoff.team_id,
            business_seconds_to_decision=seconds,
            within_sla=within,
            attribution=handoff.attribution,
        ),
    )


def rejected(
    handoff: Handoff,
    principal: Principal,
    *,
    reason: RejectionReason,
    sealed_note: str | None,
    seconds: int,
    within: bool,
    now: datetime,
) -> HandoffRejectedV2:
    """The rejection, its note sealed with the lead's key (``people.seal_note``)."""
    return HandoffRejectedV2.new(
        source=SERVICE,
        subject=handoff.handoff_id,
        time=now,
        data=HandoffRejectedV2Data(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            rep_id=handoff.rep_id or principal.subject,
            team=handoff.team_id,
            reason=reason,
            sealed_note=sealed_note,
            business_seconds_to_decision=seconds,
            within_sla=within,
            attribution=handoff.attribution,
        ),
    )


async def emit(
    connection: asyncpg.Connection,
    handoff: Handoff,
    team: Team | None,
    events: list[Envelope],
    notify: list[NotificationKind],
    *,
    now: datetime,
) -> None:
    """The events to the outbox and the notifications to their queue, in the caller's
    transaction: nothing is told that did not happen, and nothing that happened is
    left untold."""
    await outbox.enqueue(connection, *events)
    if team is None or not notify:
        return
    rep = None
    if handoff.rep_id is not None:
        email, slack_member_id = await store.contact_of(connection, handoff.rep_id)
        rep = Person(handoff.rep_id, email, slack_member_id)
    manager = None
    if team.manager_id is not None:
        manager = Person(team.manager_id, team.manager_email, team.manager_slack_member_id)
    rows = [
        row
        for kind in notify
        for row in notifications_for(team, handoff, kind, rep=rep, manager=manager, now=now)
    ]
    if rows:
        await store.enqueue_notifications(connection, rows)
