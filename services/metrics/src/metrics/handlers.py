"""Events in: each event's facts (``metrics.facts.table``) recorded in the consumer's
transaction by :func:`record`, which ``funnel replay`` calls with a whole batch.

Facts are kept per entity by a rule that does not depend on arrival order (see
``store.py`` and ``state.py``), so the order in which events arrive, across topics or
within one, never changes the figures.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from funnel_common.consumer import Handler
from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
    Envelope,
)
from funnel_common.service import ConsumerSpec
from metrics import facts, store
from metrics.state import DealEvent, fold_deal


async def record(connection: asyncpg.Connection, found: Iterable[facts.Fact]) -> None:
    """Writes facts of any kinds, one statement per kind, then folds again each deal
    that got an event (from all of its events, old and new)."""
    by_kind: dict[type, list[facts.Fact]] = {}
    for fact in found:
        by_kind.setdefault(type(fact), []).append(fact)
    writers = {
        facts.LeadStage: store.record_lead_stages,
        facts.Decision: store.record_decisions,
        facts.Deadline: store.record_deadlines,
        facts.Breach: store.record_breaches,
        facts.Escalation: store.record_escalations,
        facts.DealDelivery: store.record_deal_events,
        facts.AccountDelivery: store.record_account_events,
        facts.Target: store.record_targets,
    }
    for kind, write in writers.items():
        if kind in by_kind:
            await write(connection, by_kind[kind])  # type: ignore[operator]
    deliveries = by_kind.get(facts.DealDelivery, [])
    if deliveries:
        deal_ids = sorted({delivery.event.deal_id for delivery in deliveries})  # type: ignore[union-attr]
        events: dict[str, list[DealEvent]] = {}
        for event in await store.deal_events(connection, deal_ids):
            events.setdefault(event.deal_id, []).append(event)
        await store.save_deals(connection, [fold_deal(events[deal_id]) for deal_id in deal_ids])


def handlers(reporting_currency: str) -> dict[type[Envelope], Handler]:
    """{event type: handler}: each records what ``facts.table`` says the event tells."""
    table = facts.table(reporting_currency)

    async def handle(connection: asyncpg.Connection, event: Envelope) -> None:
        await record(connection, table[type(event)](event))

    return dict.fromkeys(table, handle)


TOPICS = [LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC]


def consumer(reporting_currency: str) -> ConsumerSpec:
    return ConsumerSpec(group_id="metrics", topics=TOPICS, handlers=handlers(reporting_currency))
