"""A small, hand-checkable quarter of three campaigns, as the services publish it.

- webinar / launch: four leads, all accepted (after 300, 900, 600 and 1200 business
  seconds, within their SLA); one became a deal won for $1,200, one a deal lost for $300;
- ads / spring: three leads, two rejected (not a fit, with a note; no budget), one left
  undecided past its deadline (a breach, a miss);
- web, no campaign: one lead, no handoff, and a deal won for $500 attributed to it.

Everything happens ``days_ago`` days before ``now``, inside ``now``'s quarter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from funnel_common.events import (
    DealLost,
    DealOpened,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffAssigned,
    HandoffRejected,
    HandoffSlaBreached,
    LeadCaptured,
    LeadQualified,
)

NOTE = "=cmd|' /C calc'!A0 reseller, not an end customer"
LAUNCH = {"source": "webinar", "campaign": "launch"}
SPRING = {"source": "ads", "campaign": "spring"}
WEB = {"source": "web", "campaign": None}


def _lead(attribution: dict[str, Any], at: datetime) -> tuple[UUID, list[Envelope]]:
    lead_id = uuid4()
    common = {"lead_id": lead_id, "attribution": attribution}
    profile = {"email": f"{lead_id.hex[:6]}@example.com", "company": "Example Co"}
    return lead_id, [
        LeadCaptured.new(
            source="lead-intake", subject=lead_id, time=at,
            data={**common, "form_id": "landing-page", "profile": profile},
        ),
        LeadQualified.new(
            source="lead-intake", subject=lead_id, time=at + timedelta(minutes=1),
            data={**common, "score": 70, "reasons": [], "rules_version": "t", "profile": profile},
        ),
    ]  # fmt: skip


def _handoff(
    lead_id: UUID, attribution: dict[str, Any], at: datetime, *, team: str = "emea"
) -> tuple[UUID, dict[str, Any], Envelope]:
    handoff_id = uuid4()
    common = {"handoff_id": handoff_id, "lead_id": lead_id, "team": team}
    assigned = HandoffAssigned.new(
        source="handoff", subject=handoff_id, time=at,
        data={**common, "assignee_rep_id": "ada", "assigned_at": at,
              "due_at": at + timedelta(hours=1), "policy": "standard",
              "attribution": attribution},
    )  # fmt: skip
    return handoff_id, common, assigned


def _deal(kind: type[Envelope], lead_id: UUID, amount: int, at: datetime, **more: Any) -> Envelope:
    deal_id = f"opp-{uuid4().hex[:8]}"
    attribution = more.pop("attribution", None)
    return kind.new(
        source="lead-intake", subject=deal_id, time=at,
        data={"deal_id": deal_id, "lead_id": lead_id, "amount_cents": amount,
              "currency": "USD", "stage": "proposal",
              "attribution": attribution or LAUNCH, **more},
    )  # fmt: skip


def three_campaigns(now: datetime, days_ago: int = 10) -> list[Envelope]:
    at = now - timedelta(days=days_ago)
    today = now.date()
    events: list[Envelope] = []
    launch_leads = []
    for seconds in (300, 900, 600, 1200):
        lead_id, lead = _lead(LAUNCH, at)
        launch_leads.append(lead_id)
        handoff_id, common, assigned = _handoff(lead_id, LAUNCH, at + timedelta(minutes=2))
        accepted = HandoffAccepted.new(
            source="handoff", subject=handoff_id, time=at + timedelta(minutes=10),
            data={**common, "rep_id": "ada", "business_seconds_to_decision": seconds,
                  "within_sla": True, "attribution": LAUNCH},
        )  # fmt: skip
        events += [*lead, assigned, accepted]
    events += [
        _deal(DealOpened, launch_leads[0], 100_000, at + timedelta(days=1)),
        _deal(DealWon, launch_leads[0], 120_000, at + timedelta(days=2), closed_on=str(today)),
        _deal(
            DealLost, launch_leads[1], 30_000, at + timedelta(days=2), closed_on=str(today),
            reason="price",
        ),
    ]  # fmt: skip
    for reason, note in (("not_a_fit", NOTE), ("no_budget", None), (None, None)):
        lead_id, lead = _lead(SPRING, at)
        handoff_id, common, assigned = _handoff(lead_id, SPRING, at + timedelta(minutes=2))
        events += [*lead, assigned]
        if reason is None:  # nobody answered: the deadline passes, a breach
            events.append(
                HandoffSlaBreached.new(
                    source="handoff", subject=handoff_id, time=at + timedelta(hours=1, minutes=2),
                    data={**common, "rep_id": "ada", "policy": "standard",
                          "due_at": at + timedelta(hours=1, minutes=2)},
                )
            )  # fmt: skip
            continue
        events.append(
            HandoffRejected.new(
                source="handoff", subject=handoff_id, time=at + timedelta(minutes=20),
                data={**common, "rep_id": "ada", "reason": reason, "note": note,
                      "business_seconds_to_decision": 1080, "within_sla": True,
                      "attribution": SPRING},
            )
        )  # fmt: skip
    lead_id, lead = _lead(WEB, at)
    events += [
        lead[0],
        _deal(DealWon, lead_id, 50_000, at, closed_on=str(today), attribution=WEB),
    ]
    return events
