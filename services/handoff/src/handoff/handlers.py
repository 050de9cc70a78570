"""Events in: {event type: handler}; each runs inside the consumer's transaction."""

from __future__ import annotations

import asyncpg

from funnel_common.deals import DealEnvelope, deal_event, fold_deal
from funnel_common.events import (
    DEALS_TOPIC,
    LEADS_TOPIC,
    PEOPLE_TOPIC,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    LeadCaptured,
    LeadCapturedV2,
    LeadMerged,
    LeadQualified,
    LeadQualifiedV2,
    PersonErased,
    PersonKeyIssued,
)
from funnel_common.service import ConsumerSpec, handles
from funnel_common.types import utc_now
from handoff import assignment, feedback_store, people, store


async def on_lead_captured(
    connection: asyncpg.Connection, event: LeadCaptured | LeadCapturedV2
) -> None:
    await store.record_lead(
        connection,
        lead_id=event.data.lead_id,
        source=event.data.attribution.source,
        campaign=event.data.attribution.campaign,
        captured_at=event.time,
        form_id=event.data.form_id,
    )


async def on_lead_qualified(
    connection: asyncpg.Connection, event: LeadQualified | LeadQualifiedV2
) -> None:
    # The SLA clock starts when handoff hears of the lead, not when it was qualified:
    # a rep cannot act on a lead that has not reached them yet.
    await assignment.create_from_lead(connection, event, now=utc_now())


async def on_lead_merged(connection: asyncpg.Connection, event: LeadMerged) -> None:
    # A returning person's later submission: the rep sees every campaign that reached them.
    await store.record_touch(
        connection,
        lead_id=event.data.lead_id,
        submission_id=event.data.submission_id,
        matched_on=event.data.matched_on,
        form_id=event.data.form_id,
        attribution=event.data.attribution,
        touched_at=event.time,
    )


async def on_deal(connection: asyncpg.Connection, event: DealEnvelope) -> None:
    # What became of a lead, for marketing's feedback page: the deal's state is folded
    # again from all of its events, so arrival order never matters.
    await feedback_store.record_deal_event(connection, event.id, deal_event(event))
    events = await feedback_store.deal_events(connection, event.data.deal_id)
    await feedback_store.save_deal(connection, fold_deal(events))


# v1 lead events (personal data in clear) are events recorded before sealing: still
# applied, so a topic that holds them is still read.
HANDLERS = dict(
    [
        handles(LeadCaptured, on_lead_captured),
        handles(LeadCapturedV2, on_lead_captured),
        handles(LeadQualified, on_lead_qualified),
        handles(LeadQualifiedV2, on_lead_qualified),
        handles(LeadMerged, on_lead_merged),
        handles(PersonKeyIssued, people.on_person_key_issued),
        handles(PersonErased, people.on_person_erased),
        handles(DealOpened, on_deal),
        handles(DealUpdated, on_deal),
        handles(DealWon, on_deal),
        handles(DealLost, on_deal),
    ]
)

CONSUMER = ConsumerSpec(
    group_id="handoff", topics=[LEADS_TOPIC, DEALS_TOPIC, PEOPLE_TOPIC], handlers=HANDLERS
)
