"""Deal and account state from CRM and billing deliveries: a pure fold, whatever their order.

CRMs and billing systems deliver late, twice and out of order (ARCHITECTURE.md, "Order
independence"). So a deal's state is a function of the *set* of its recorded deliveries,
recomputed from all of them on each new one:

- deliveries are ordered by when they happened (``occurred_at``), then by their step in
  the lifecycle (opened, then updated, then won or lost; activated, then arr_changed,
  then churned: a deal opened and won in the same second is won, whatever opaque ids
  the sender gave them), then by the sender's delivery id (the webhook id, compared as
  strings), never by arrival. metrics folds the events by the same order;
- each field takes the value of the latest delivery that set it;
- the status is that of the latest status-changing delivery (``opened``: open, an
  ``opened`` after a close being a reopen; ``won``; ``lost``); an ``updated`` never
  changes it, and a deal with none is open;
- a delivery for a deal not yet opened is recorded like any other: the deal exists from
  then on.

Accounts alike: ``activated`` and ``churned`` change the status, ``arr_changed`` only the
ARR. Each published event carries the delivery's id and (deals) the fields it set, so a
consumer folds the events by the same rule and reaches the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from funnel_common.events import (
    AccountActivated,
    AccountActivatedData,
    AccountArrChanged,
    AccountArrChangedData,
    AccountChurned,
    AccountChurnedData,
    Attribution,
    DealField,
    DealLost,
    DealLostData,
    DealOpened,
    DealState,
    DealUpdated,
    DealWon,
    DealWonData,
    Envelope,
)
from lead_intake.intake import SERVICE

DealStatus = Literal["open", "won", "lost"]
DealAction = Literal["opened", "updated", "won", "lost"]
AccountStatus = Literal["active", "churned"]
AccountAction = Literal["activated", "arr_changed", "churned"]

# Deliveries that happened at the same instant (CRMs send second or day precision) go in
# lifecycle order before the sender's id breaks the tie.
DEAL_LIFECYCLE_STEP: dict[DealAction, int] = {"opened": 0, "updated": 1, "won": 2, "lost": 2}
ACCOUNT_LIFECYCLE_STEP: dict[AccountAction, int] = {
    "activated": 0,
    "arr_changed": 1,
    "churned": 2,
}

UNATTRIBUTED = Attribution(source="unattributed")
DEAL_STATUS_OF: dict[DealAction, DealStatus] = {"opened": "open", "won": "won", "lost": "lost"}
# A status change without a stage still says where the deal stands: a reopened deal is
# not "closed_won" any more (the weighted forecast reads the stage).
IMPLIED_STAGE: dict[DealAction, str] = {
    "opened": "open",
    "won": "closed_won",
    "lost": "closed_lost",
}
ACCOUNT_STATUS_OF: dict[AccountAction, AccountStatus] = {
    "activated": "active",
    "churned": "churned",
}


class DealFields(BaseModel):
    """What one delivery itself set (None: not set by it). Stored per delivery as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_id: UUID | None = None
    attribution: Attribution | None = None
    amount_cents: int | None = None
    stage: str | None = None
    expected_close_date: date | None = None
    closed_on: date | None = None
    reason: str | None = None

    def names(self) -> list[DealField]:
        """The deal state's fields this delivery set, as events list them."""
        names: list[DealField] = []
        if self.attribution is not None:
            names += ["lead_id", "attribution"]  # a lead link sets both
        if self.amount_cents is not None:
            names.append("amount_cents")
        if self.stage is not None:
            names.append("stage")
        if self.expected_close_date is not None:
            names.append("expected_close_date")
        return names


@dataclass(frozen=True)
class DealDelivery:
    """One recorded delivery about a deal."""

    integration: str
    webhook_id: str
    deal_id: str
    action: DealAction
    occurred_at: datetime
    fields: DealFields

    @property
    def order(self) -> tuple[datetime, int, str, str]:
        """When it happened, its lifecycle step, then the sender's id (then whose: ids are
        per sender)."""
        return (
            self.occurred_at,
            DEAL_LIFECYCLE_STEP[self.action],
            self.webhook_id,
            self.integration,
        )


@dataclass(frozen=True)
class Deal:
    """A deal's state: the fold of its deliveries."""

    status: DealStatus
    state: DealState
    closed_on: date | None = None
    reason: str | None = None


def fold_deal(deal_id: str, deliveries: list[DealDelivery], currency: str) -> Deal:
    """The deal's state from the set of its deliveries (their order does not matter)."""
    ordered = sorted(deliveries, key=lambda delivery: delivery.order)
    status: DealStatus = "open"
    closing: DealDelivery | None = None
    latest: dict[str, object] = {}
    for delivery in ordered:
        if delivery.action in DEAL_STATUS_OF:
            status = DEAL_STATUS_OF[delivery.action]
            closing = delivery if status != "open" else None
        fields = delivery.fields
        if fields.attribution is not None:
            latest["lead_id"] = fields.lead_id
            latest["attribution"] = fields.attribution
        for name in ("amount_cents", "stage", "expected_close_date"):
            value = getattr(fields, name)
            if value is not None:
                latest[name] = value
    state = DealState.model_validate(
        {
            "deal_id": deal_id,
            "lead_id": latest.get("lead_id"),
            "attribution": latest.get("attribution", UNATTRIBUTED),
            "amount_cents": latest.get("amount_cents", 0),
            "currency": currency,
            "stage": latest.get("stage", "open"),
            "expected_close_date": latest.get("expected_close_date"),
        }
    )
    if closing is None:
        return Deal(status=status, state=state)
    return Deal(
        status=status,
        state=state,
        closed_on=closing.fields.closed_on or closing.occurred_at.date(),
        reason=closing.fields.reason,
    )


def deal_event(delivery: DealDelivery, deal: Deal) -> Envelope:
    """The event recording ``delivery``: its own kind and time, the deal's state as known
    once it is recorded, the delivery's id and the fields it set."""
    data = deal.state.model_copy(
        update={"delivery_id": delivery.webhook_id, "fields_set": delivery.fields.names()}
    ).model_dump()
    subject, at = delivery.deal_id, delivery.occurred_at
    closed_on = delivery.fields.closed_on or at.date()
    if delivery.action == "opened":
        return DealOpened.new(source=SERVICE, subject=subject, data=data, time=at)
    if delivery.action == "updated":
        return DealUpdated.new(source=SERVICE, subject=subject, data=data, time=at)
    if delivery.action == "won":
        won = DealWonData(**data, closed_on=closed_on)
        return DealWon.new(source=SERVICE, subject=subject, data=won, time=at)
    lost = DealLostData(**data, closed_on=closed_on, reason=delivery.fields.reason or "unknown")
    return DealLost.new(source=SERVICE, subject=subject, data=lost, time=at)


@dataclass(frozen=True)
class AccountDelivery:
    """One recorded delivery about a customer account."""

    integration: str
    webhook_id: str
    account_id: str
    action: AccountAction
    occurred_at: datetime
    arr_cents: int | None
    deal_id: str | None = None
    attribution: Attribution | None = None

    @property
    def order(self) -> tuple[datetime, int, str, str]:
        return (
            self.occurred_at,
            ACCOUNT_LIFECYCLE_STEP[self.action],
            self.webhook_id,
            self.integration,
        )


@dataclass(frozen=True)
class Account:
    """An account's state: the fold of its deliveries."""

    status: AccountStatus
    arr_cents: int


def fold_account(deliveries: list[AccountDelivery]) -> Account:
    """The account's state from the set of its deliveries (their order does not matter).

    Without a status change (only ARR changes so far) the account is active: billing
    reports revenue for it."""
    status: AccountStatus = "active"
    arr = 0
    for delivery in sorted(deliveries, key=lambda delivery: delivery.order):
        if delivery.action in ACCOUNT_STATUS_OF:
            status = ACCOUNT_STATUS_OF[delivery.action]
        if delivery.arr_cents is not None:
            arr = delivery.arr_cents
    return Account(status=status, arr_cents=arr)


def account_event(delivery: AccountDelivery, currency: str) -> Envelope:
    """The event recording ``delivery``: what it says, at its time, with its id."""
    subject, at = delivery.account_id, delivery.occurred_at
    if delivery.action == "activated":
        activated = AccountActivatedData(
            account_id=subject,
            arr_cents=delivery.arr_cents or 0,
            currency=currency,
            deal_id=delivery.deal_id,
            attribution=delivery.attribution,
            delivery_id=delivery.webhook_id,
        )
        return AccountActivated.new(source=SERVICE, subject=subject, data=activated, time=at)
    if delivery.action == "arr_changed":
        changed = AccountArrChangedData(
            account_id=subject,
            arr_cents=delivery.arr_cents or 0,
            currency=currency,
            delivery_id=delivery.webhook_id,
        )
        return AccountArrChanged.new(source=SERVICE, subject=subject, data=changed, time=at)
    churned = AccountChurnedData(account_id=subject, delivery_id=delivery.webhook_id)
    return AccountChurned.new(source=SERVICE, subject=subject, data=churned, time=at)
