"""Events in: {event type: handler}; each runs inside the consumer's transaction.

Handlers only record facts (see store.py); no handler reads a figure, so the order in
which events arrive, across topics or within one, never changes the result.
"""

from __future__ import annotations

import asyncpg

from funnel_common.access import ACCESS_HANDLERS
from funnel_common.consumer import Handler
from funnel_common.events import (
    ACCESS_TOPIC,
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffRejected,
    HandoffSlaBreached,
    LeadCaptured,
    LeadDisqualified,
    LeadQualified,
    TargetSet,
)
from funnel_common.service import ConsumerSpec
from metrics import store


class WrongCurrency(ValueError):
    """Money in another currency than the reporting one cannot be added up: the event
    is parked in the DLQ (after the runner's retries) rather than silently mixed in."""


def _check_currency(currency: str, reporting_currency: str) -> None:
    if currency != reporting_currency:
        raise WrongCurrency(f"amount in {currency}, reporting currency is {reporting_currency}")


async def on_lead_stage(
    connection: asyncpg.Connection, event: LeadCaptured | LeadQualified | LeadDisqualified
) -> None:
    stage = {
        LeadCaptured: "captured",
        LeadQualified: "qualified",
        LeadDisqualified: "disqualified",
    }[type(event)]
    await store.record_lead_stage(
        connection,
        stage=stage,
        lead_id=event.data.lead_id,
        source=event.data.attribution.source,
        campaign=event.data.attribution.campaign,
        occurred_at=event.time,
        event_id=event.id,
    )


async def on_handoff_decided(
    connection: asyncpg.Connection, event: HandoffAccepted | HandoffRejected
) -> None:
    await store.record_handoff_decision(
        connection,
        handoff_id=event.data.handoff_id,
        outcome="accepted" if isinstance(event, HandoffAccepted) else "rejected",
        reason=event.data.reason if isinstance(event, HandoffRejected) else None,
        source=event.data.attribution.source,
        campaign=event.data.attribution.campaign,
        within_sla=event.data.within_sla,
        business_seconds_to_decision=event.data.business_seconds_to_decision,
        occurred_at=event.time,
        event_id=event.id,
    )


async def on_sla_breached(connection: asyncpg.Connection, event: HandoffSlaBreached) -> None:
    await store.record_sla_breach(
        connection, handoff_id=event.data.handoff_id, due_at=event.data.due_at
    )


def deal_handler(reporting_currency: str) -> Handler:
    async def on_deal(
        connection: asyncpg.Connection, event: DealOpened | DealUpdated | DealWon | DealLost
    ) -> None:
        data = event.data
        _check_currency(data.currency, reporting_currency)
        status = (
            "won"
            if isinstance(event, DealWon)
            else "lost"
            if isinstance(event, DealLost)
            else "open"
        )
        await store.record_deal_state(
            connection,
            deal_id=data.deal_id,
            status=status,
            source=data.attribution.source,
            campaign=data.attribution.campaign,
            amount_cents=data.amount_cents,
            stage=data.stage,
            expected_close_date=data.expected_close_date,
            closed_on=event.data.closed_on if isinstance(event, DealWon | DealLost) else None,
            lost_reason=event.data.reason if isinstance(event, DealLost) else None,
            occurred_at=event.time,
            event_id=event.id,
        )

    return on_deal


def account_handler(reporting_currency: str) -> Handler:
    async def on_account(
        connection: asyncpg.Connection,
        event: AccountActivated | AccountArrChanged | AccountChurned,
    ) -> None:
        if isinstance(event, AccountChurned):
            active, arr_cents = False, 0
        else:
            _check_currency(event.data.currency, reporting_currency)
            active, arr_cents = True, event.data.arr_cents
        await store.record_account_event(
            connection,
            event_id=event.id,
            account_id=event.data.account_id,
            occurred_at=event.time,
            active=active,
            arr_cents=arr_cents,
        )

    return on_account


async def on_target_set(connection: asyncpg.Connection, event: TargetSet) -> None:
    await store.record_target(
        connection,
        period=event.data.period,
        amount_cents=event.data.amount_cents,
        set_at=event.time,
        event_id=event.id,
    )


def handlers(reporting_currency: str) -> dict[type[Envelope], Handler]:
    on_deal = deal_handler(reporting_currency)
    on_account = account_handler(reporting_currency)
    return {
        LeadCaptured: on_lead_stage,
        LeadQualified: on_lead_stage,
        LeadDisqualified: on_lead_stage,
        HandoffAccepted: on_handoff_decided,
        HandoffRejected: on_handoff_decided,
        HandoffSlaBreached: on_sla_breached,
        DealOpened: on_deal,
        DealUpdated: on_deal,
        DealWon: on_deal,
        DealLost: on_deal,
        AccountActivated: on_account,
        AccountArrChanged: on_account,
        AccountChurned: on_account,
        TargetSet: on_target_set,
        # The token projection every service keeps (funnel_common.access); here, a
        # replay rebuilds it with the rest.
        **ACCESS_HANDLERS,
    }


TOPICS = [LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC, ACCESS_TOPIC]


def consumer(reporting_currency: str) -> ConsumerSpec:
    return ConsumerSpec(group_id="metrics", topics=TOPICS, handlers=handlers(reporting_currency))
