"""Applying one CRM or billing delivery: record it, fold the entity's state, publish.

The one path for deals and accounts, whoever sent them: our signed webhooks, `funnel
import`, and the HubSpot, Salesforce and Stripe connectors. Each delivery is deduplicated
by its sender's id (per integration), recorded with what it set, and the entity's state
is recomputed from every recorded delivery (``outcomes.py``), so the order they arrive
in changes nothing. The state, the delivery and its event commit in the caller's
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from funnel_common import outbox
from lead_intake import store
from lead_intake.models import AccountWebhook, DealWebhook
from lead_intake.outcomes import (
    IMPLIED_STAGE,
    AccountDelivery,
    DealDelivery,
    DealFields,
    account_event,
    deal_event,
    fold_account,
    fold_deal,
)
from lead_intake.screening import normalise_email


class DeliveryRefused(ValueError):
    """A delivery that cannot be applied as sent, naming the field (answered 422)."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Applied:
    """What a delivery did: ``applied``, or ``duplicate`` (seen before, nothing changed),
    and the entity's status after it (``unknown`` for a duplicate of a refused one)."""

    status: Literal["applied", "duplicate"]
    subject: str
    state: str


def check_currency(currency: str | None, reporting_currency: str) -> str:
    """The reporting currency, or :class:`DeliveryRefused`: money is never converted."""
    if currency is not None and currency != reporting_currency:
        raise DeliveryRefused(
            "currency", f"must be the reporting currency {reporting_currency}", "currency_mismatch"
        )
    return reporting_currency


async def _lead_link(connection: asyncpg.Connection, webhook: DealWebhook) -> DealFields:
    """The lead a delivery links the deal to (its source and campaign ride along)."""
    if webhook.lead_id is not None:
        lead = await store.find_lead(connection, webhook.lead_id)
        if lead is None:
            raise DeliveryRefused("lead_id", "no lead has this id", "unknown_lead")
        return DealFields(lead_id=lead.lead_id, attribution=lead.attribution)
    if webhook.email is not None:
        lead = await store.find_lead_by_email(connection, normalise_email(webhook.email))
        if lead is not None:
            return DealFields(lead_id=lead.lead_id, attribution=lead.attribution)
    return DealFields()


async def apply_deal(
    connection: asyncpg.Connection,
    integration: str,
    webhook: DealWebhook,
    *,
    reporting_currency: str,
    now: datetime,
) -> Applied:
    """Records a deal delivery and publishes its event; :class:`DeliveryRefused` if it
    cannot be applied (the caller's transaction then rolls back)."""
    currency = check_currency(webhook.currency, reporting_currency)
    if webhook.event == "lost" and webhook.reason is None:
        raise DeliveryRefused("reason", "a lost deal needs a reason", "missing")
    if not await store.record_delivery(connection, integration, webhook.webhook_id):
        current = await store.find_deal(connection, webhook.deal_id)
        return Applied("duplicate", webhook.deal_id, current[0] if current else "unknown")
    await store.lock_entity(connection, "deal", webhook.deal_id)
    link = await _lead_link(connection, webhook)
    closing = webhook.event in ("won", "lost")
    delivery = DealDelivery(
        integration=integration,
        webhook_id=webhook.webhook_id,
        deal_id=webhook.deal_id,
        action=webhook.event,
        occurred_at=webhook.occurred_at or now,
        fields=link.model_copy(
            update={
                "amount_cents": webhook.amount_cents,
                "stage": webhook.stage or IMPLIED_STAGE.get(webhook.event),
                "expected_close_date": webhook.expected_close_date,
                "closed_on": webhook.closed_on if closing else None,
                "reason": webhook.reason if webhook.event == "lost" else None,
            }
        ),
    )
    await store.insert_deal_delivery(connection, delivery)
    deal = fold_deal(webhook.deal_id, await store.deal_deliveries(connection, webhook.deal_id),
                     currency)  # fmt: skip
    await store.save_deal(connection, deal.status, deal.state)
    await outbox.enqueue(connection, deal_event(delivery, deal))
    return Applied("applied", webhook.deal_id, deal.status)


async def apply_account(
    connection: asyncpg.Connection,
    integration: str,
    webhook: AccountWebhook,
    *,
    reporting_currency: str,
    now: datetime,
) -> Applied:
    """Records an account delivery and publishes its event; :class:`DeliveryRefused` if
    it cannot be applied."""
    currency = check_currency(webhook.currency, reporting_currency)
    if webhook.event != "churned" and webhook.arr_cents is None:
        raise DeliveryRefused("arr_cents", f"required for {webhook.event}", "missing")
    if not await store.record_delivery(connection, integration, webhook.webhook_id):
        current = await store.find_account(connection, webhook.account_id)
        return Applied("duplicate", webhook.account_id, current[0] if current else "unknown")
    await store.lock_entity(connection, "account", webhook.account_id)
    deal = None
    if webhook.event == "activated" and webhook.deal_id is not None:
        deal = await store.find_deal(connection, webhook.deal_id)
    delivery = AccountDelivery(
        integration=integration,
        webhook_id=webhook.webhook_id,
        account_id=webhook.account_id,
        action=webhook.event,
        occurred_at=webhook.occurred_at or now,
        arr_cents=webhook.arr_cents if webhook.event != "churned" else None,
        deal_id=webhook.deal_id if webhook.event == "activated" else None,
        attribution=deal[1].attribution if deal else None,
    )
    await store.insert_account_delivery(connection, delivery)
    account = fold_account(await store.account_deliveries(connection, webhook.account_id))
    await store.save_account(connection, webhook.account_id, account.status, account.arr_cents)
    await outbox.enqueue(connection, account_event(delivery, currency))
    return Applied("applied", webhook.account_id, account.status)
