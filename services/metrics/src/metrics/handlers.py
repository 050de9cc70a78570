"""Events in: each event's facts (``metrics.facts.table``) recorded in the consumer's
transaction by :func:`record`, which ``funnel replay`` calls with a whole batch.

Facts are kept per entity by a rule that does not depend on arrival order (see
``store.py`` and ``state.py``), so the order in which events arrive, across topics or
within one, never changes the figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import asyncpg

from funnel_common.access import ACCESS_HANDLERS
from funnel_common.consumer import Handler
from funnel_common.deals import DealEvent, fold_deal
from funnel_common.events import (
    ACCESS_TOPIC,
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
    Envelope,
)
from funnel_common.service import ConsumerSpec
from metrics import facts, store


async def record(
    connection: asyncpg.Connection, found: Iterable[facts.Fact], *, bulk: bool = False
) -> None:
    """Writes facts of any kinds, one upsert per kind, and folds again each deal that
    got an event, from all of its events: the ones stored before and the new.

    ``bulk`` (replay, thousands of facts): rows go through the connection's staging
    tables (``store.create_staging_tables``) by COPY instead of one JSON parameter."""
    by_kind: dict[type, list[facts.Fact]] = {}
    for fact in found:
        by_kind.setdefault(type(fact), []).append(fact)
    deliveries: list[facts.DealDelivery] = by_kind.pop(facts.DealDelivery, [])  # type: ignore[assignment]
    writers = {
        facts.LeadStage: store.record_lead_stages,
        facts.Decision: store.record_decisions,
        facts.RejectionNote: store.record_rejection_notes,
        facts.Deadline: store.record_deadlines,
        facts.HandoffLead: store.record_handoff_leads,
        facts.Breach: store.record_breaches,
        facts.Escalation: store.record_escalations,
        facts.AccountDelivery: store.record_account_events,
        facts.Target: store.record_targets,
    }
    for kind, write in writers.items():
        if kind in by_kind:
            await write(connection, by_kind[kind], bulk=bulk)  # type: ignore[operator]
    # Tokens are few: each with the projection's own statement (funnel_common.access).
    for change in by_kind.get(facts.TokenChange, []):
        if isinstance(change, facts.TokenChange):
            await ACCESS_HANDLERS[type(change.event)](connection, change.event)
    if deliveries:
        events: dict[str, list[DealEvent]] = {}
        for delivery in deliveries:
            events.setdefault(delivery.event.deal_id, []).append(delivery.event)
        # Read before writing the new ones: a replay's batch mostly holds a deal's
        # first events, and PostgreSQL need not send them back. A delivery already
        # stored (the same content under another event id) is one event to the fold.
        for event in await store.deal_events(connection, list(events)):
            events[event.deal_id].append(event)
        await store.record_deal_events(connection, deliveries, bulk=bulk)
        folded = [fold_deal(known) for known in events.values()]
        await store.save_deals(connection, folded, bulk=bulk)


log = logging.getLogger(__name__)


def handlers(reporting_currency: str) -> dict[type[Envelope], Handler]:
    """{event type: handler}: each records what ``facts.table`` says the event tells,
    the token projection every service keeps among them (a replay rebuilds it too)."""
    table = facts.table(reporting_currency)

    async def handle(connection: asyncpg.Connection, event: Envelope) -> None:
        await record(connection, table[type(event)](event))
        # One line per event, ids only, carrying its trace_id: `grep <trace_id>` follows a
        # lead from the form post to the funnel count (docs/operations.md, Logs).
        log.info("event recorded", extra={"event_type": event.type, "event_id": str(event.id)})

    return dict.fromkeys(table, handle)


TOPICS = [LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC, ACCESS_TOPIC]


def consumer(reporting_currency: str) -> ConsumerSpec:
    return ConsumerSpec(group_id="metrics", topics=TOPICS, handlers=handlers(reporting_currency))
