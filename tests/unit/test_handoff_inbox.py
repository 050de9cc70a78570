"""The inbox's pure parts: SLA state from the deadlines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from funnel_common.events import Attribution
from handoff.inbox_pages import sla_state
from handoff.models import Handoff
from handoff.sla import DEFAULT_POLICY

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def handoff(**changes: object) -> Handoff:
    base = Handoff(
        handoff_id=uuid4(),
        lead_id=uuid4(),
        team_id="emea",
        rep_id="ada",
        status="assigned",
        policy_name="default",
        policy=DEFAULT_POLICY,
        segment="smb",
        country="DE",
        form_type=None,
        attribution=Attribution(source="webinar"),
        profile={},
        score=80,
        created_at=NOW,
        assigned_at=NOW,
        at_risk_at=NOW + timedelta(minutes=30),
        at_risk_fired=False,
        due_at=NOW + timedelta(minutes=60),
        breaches=0,
        previous_rep_ids=(),
        excluded_teams=(),
        decided_at=None,
        decided_by=None,
        reject_reason=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_sla_state_follows_the_at_risk_threshold_and_the_due_date() -> None:
    one = handoff()
    assert sla_state(one, NOW) == "on-time"
    assert sla_state(one, NOW + timedelta(minutes=30)) == "at-risk"
    assert sla_state(one, NOW + timedelta(minutes=59)) == "at-risk"
    assert sla_state(one, NOW + timedelta(minutes=60)) == "breached"
    assert sla_state(handoff(due_at=None, at_risk_at=None), NOW) == "none"
