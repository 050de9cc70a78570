"""Events in: {event type: handler}; each runs inside the consumer's transaction."""

from __future__ import annotations

import asyncpg

from funnel_common.consumer import Handler
from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    Envelope,
    LeadCaptured,
)
from funnel_common.service import ConsumerSpec
from metrics import store


async def on_lead_captured(connection: asyncpg.Connection, event: LeadCaptured) -> None:
    await store.count_stage(
        connection,
        stage="captured",
        source=event.data.attribution.source,
        campaign=event.data.attribution.campaign,
    )


HANDLERS: dict[type[Envelope], Handler] = {
    LeadCaptured: on_lead_captured,
}

CONSUMER = ConsumerSpec(
    group_id="metrics",
    topics=[LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC],
    handlers=HANDLERS,
)
