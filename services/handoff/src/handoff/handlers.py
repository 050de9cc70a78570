"""Events in: {event type: handler}; each runs inside the consumer's transaction."""

from __future__ import annotations

import asyncpg

from funnel_common.consumer import Handler
from funnel_common.events import LEADS_TOPIC, Envelope, LeadCaptured
from funnel_common.service import ConsumerSpec
from handoff import store


async def on_lead_captured(connection: asyncpg.Connection, event: LeadCaptured) -> None:
    await store.record_lead(
        connection,
        lead_id=event.data.lead_id,
        source=event.data.attribution.source,
        campaign=event.data.attribution.campaign,
        captured_at=event.time,
    )


HANDLERS: dict[type[Envelope], Handler] = {
    LeadCaptured: on_lead_captured,
}

CONSUMER = ConsumerSpec(group_id="handoff", topics=[LEADS_TOPIC], handlers=HANDLERS)
