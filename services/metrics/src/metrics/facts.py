"""What each event tells metrics, as plain facts (pure: no I/O).

``FACTS`` is the table of every event metrics hears and the function that turns it
into facts. The live consumer applies one event's facts at a time and ``funnel
replay`` a batch's at once, through the same ``metrics.handlers.record``, so both end
in the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from funnel_common.deals import DealEnvelope, DealEvent, deal_event
from funnel_common.events import (
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffAssigned,
    HandoffAssignedData,
    HandoffReassigned,
    HandoffRejected,
    HandoffRejectedV2,
    HandoffSlaBreached,
    LeadCaptured,
    LeadCapturedV2,
    LeadDisqualified,
    LeadQualified,
    LeadQualifiedV2,
    TargetSet,
    TokenIssued,
    TokenRevoked,
)
from metrics.state import AccountEvent


class WrongCurrency(ValueError):
    """Money in another currency than the reporting one cannot be added up: the event
    is parked in the DLQ (after the runner's retries) rather than silently mixed in."""


@dataclass(frozen=True)
class LeadStage:
    """A lead reached a stage: captured (or spam), qualified, disqualified."""

    stage: str
    lead_id: UUID
    source: str
    campaign: str
    occurred_at: datetime
    event_id: UUID


@dataclass(frozen=True)
class Decision:
    """A rep accepted or rejected a handoff; decisions are final."""

    handoff_id: UUID
    lead_id: UUID
    outcome: str
    reason: str | None
    source: str
    campaign: str
    within_sla: bool
    business_seconds_to_decision: int
    occurred_at: datetime
    event_id: UUID


@dataclass(frozen=True)
class Deadline:
    """A handoff was (re)assigned with a response deadline; the first one counts."""

    handoff_id: UUID
    due_at: datetime
    assigned_at: datetime
    team: str


@dataclass(frozen=True)
class HandoffLead:
    """Which lead a handoff is for, and where the lead came from (it never changes)."""

    handoff_id: UUID
    lead_id: UUID
    source: str
    campaign: str


@dataclass(frozen=True)
class RejectionNote:
    """The rep's note on a rejection: personal data, kept for the review pack's examples
    in one table (``rejection_notes``) that names its lead, for erasure to reach."""

    handoff_id: UUID
    event_id: UUID
    lead_id: UUID
    note: str


@dataclass(frozen=True)
class Breach:
    handoff_id: UUID
    due_at: datetime
    policy: str


@dataclass(frozen=True)
class Escalation:
    handoff_id: UUID
    occurred_at: datetime
    event_id: UUID


@dataclass(frozen=True)
class DealDelivery:
    event_id: UUID
    event: DealEvent


@dataclass(frozen=True)
class AccountDelivery:
    event_id: UUID
    event: AccountEvent


@dataclass(frozen=True)
class Target:
    period: str
    amount_cents: int
    set_at: datetime
    event_id: UUID


@dataclass(frozen=True)
class TokenChange:
    """An API token issued or revoked: the projection every service keeps, applied by
    ``funnel_common.access`` (so a replayed schema accepts the tokens the live one does)."""

    event: TokenIssued | TokenRevoked


Fact = (
    LeadStage
    | Decision
    | RejectionNote
    | Deadline
    | HandoffLead
    | Breach
    | Escalation
    | DealDelivery
    | AccountDelivery
    | Target
    | TokenChange
)


# Events are told apart by their exact class: isinstance() on a pydantic model goes
# through ABCMeta, several times per event, and showed in replay's profile.
# A .v2 lead event is its .v1 with the personal data sealed: the same facts (metrics
# never needed personal data, so it reads neither the sealed part nor the people topic).
_LEAD_STAGES: dict[type[Envelope], str] = {
    LeadCaptured: "captured",
    LeadCapturedV2: "captured",
    LeadQualified: "qualified",
    LeadQualifiedV2: "qualified",
    LeadDisqualified: "disqualified",
}

LeadStageEnvelope = (
    LeadCaptured | LeadCapturedV2 | LeadQualified | LeadQualifiedV2 | LeadDisqualified
)


def lead_stage(event: LeadStageEnvelope) -> list[Fact]:
    stage = _LEAD_STAGES[type(event)]
    if stage == "captured" and event.data.spam_reasons:  # type: ignore[union-attr]
        stage = "spam"  # flagged at capture and kept, but not a lead of the funnel
    attribution = event.data.attribution
    return [
        LeadStage(
            stage=stage,
            lead_id=event.data.lead_id,
            source=attribution.source,
            campaign=attribution.campaign or "",
            occurred_at=event.time,
            event_id=event.id,
        )
    ]


def decision(event: HandoffAccepted | HandoffRejected | HandoffRejectedV2) -> list[Fact]:
    data = event.data
    accepted = type(event) is HandoffAccepted
    # A .v2 rejection's note is sealed with the lead's key, which metrics does not hold:
    # only notes from before sealing (.v1) are kept here as examples.
    note = event.data.note if type(event) is HandoffRejected else None
    notes: list[Fact] = []
    if note and note.strip():
        notes.append(RejectionNote(data.handoff_id, event.id, data.lead_id, note))
    return [
        *notes,
        Decision(
            handoff_id=data.handoff_id,
            lead_id=data.lead_id,
            outcome="accepted" if accepted else "rejected",
            reason=None if accepted else event.data.reason,  # type: ignore[union-attr]
            source=data.attribution.source,
            campaign=data.attribution.campaign or "",
            within_sla=data.within_sla,
            business_seconds_to_decision=data.business_seconds_to_decision,
            occurred_at=event.time,
            event_id=event.id,
        ),
    ]


def deadline(event: HandoffAssigned | HandoffReassigned) -> list[Fact]:
    facts: list[Fact] = []
    data = event.data
    if type(data) is HandoffAssignedData:  # a reassignment does not carry it
        attribution = data.attribution
        facts.append(
            HandoffLead(
                data.handoff_id, data.lead_id, attribution.source, attribution.campaign or ""
            )
        )
    if data.due_at is not None:  # queued, or escalated: no deadline
        facts.append(Deadline(data.handoff_id, data.due_at, event.time, data.team))
    if type(event) is HandoffReassigned and event.data.reason == "escalation":
        facts.append(Escalation(event.data.handoff_id, event.time, event.id))
    return facts


def breach(event: HandoffSlaBreached) -> list[Fact]:
    return [Breach(event.data.handoff_id, event.data.due_at, event.data.policy)]


def deal(event: DealEnvelope, reporting_currency: str) -> list[Fact]:
    _check_currency(event.data.currency, reporting_currency)
    return [DealDelivery(event.id, deal_event(event))]


AccountEnvelope = AccountActivated | AccountArrChanged | AccountChurned


def account(event: AccountEnvelope, reporting_currency: str) -> list[Fact]:
    if type(event) is AccountChurned:
        kind, arr_cents = "churned", 0
    else:
        _check_currency(event.data.currency, reporting_currency)  # type: ignore[union-attr]
        kind = "activated" if type(event) is AccountActivated else "arr_changed"
        arr_cents = event.data.arr_cents  # type: ignore[union-attr]
    return [
        AccountDelivery(
            event.id,
            AccountEvent(
                account_id=event.data.account_id,
                kind=kind,  # type: ignore[arg-type]
                occurred_at=event.time,
                delivery_id=event.data.delivery_id,
                arr_cents=arr_cents,
            ),
        )
    ]


def target(event: TargetSet) -> list[Fact]:
    data = event.data
    return [Target(data.period, data.amount_cents, event.time, event.id)]


def token(event: TokenIssued | TokenRevoked) -> list[Fact]:
    return [TokenChange(event)]


def _check_currency(currency: str, reporting_currency: str) -> None:
    if currency != reporting_currency:
        raise WrongCurrency(f"amount in {currency}, reporting currency is {reporting_currency}")


FactsOf = Callable[[Any], list[Fact]]


def table(reporting_currency: str) -> dict[type[Envelope], FactsOf]:
    """Every event metrics hears, and what it tells."""

    def of_deal(event: DealEnvelope) -> list[Fact]:
        return deal(event, reporting_currency)

    def of_account(event: AccountEnvelope) -> list[Fact]:
        return account(event, reporting_currency)

    return {
        LeadCaptured: lead_stage,
        LeadCapturedV2: lead_stage,
        LeadQualified: lead_stage,
        LeadQualifiedV2: lead_stage,
        LeadDisqualified: lead_stage,
        HandoffAssigned: deadline,
        HandoffReassigned: deadline,
        HandoffAccepted: decision,
        HandoffRejected: decision,
        HandoffRejectedV2: decision,
        HandoffSlaBreached: breach,
        DealOpened: of_deal,
        DealUpdated: of_deal,
        DealWon: of_deal,
        DealLost: of_deal,
        AccountActivated: of_account,
        AccountArrChanged: of_account,
        AccountChurned: of_account,
        TargetSet: target,
        TokenIssued: token,
        TokenRevoked: token,
    }
