"""A simulated funnel of valid catalogue events, fast enough to fill the topics.

Through the public APIs the platform accepts about 150 leads/s here, so tens of
thousands of events would take minutes; these journeys are built with the catalogue's
own models and put on the topics with the platform's producer settings, as the outbox
relays would. No ``funnel.lead.qualified.v1``: handoff would route every one of them and
the bench would measure handoff's backlog instead of the topics.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from aiokafka import TopicPartition

from funnel_common.events import (
    AccountActivated,
    AccountArrChanged,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffRejected,
    LeadCaptured,
    LeadDisqualified,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings

SOURCES = ["web", "webinar", "event", "referral", "paid_search"]
STAGES = ["discovery", "qualification", "proposal", "negotiation", "commit"]


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def journeys(leads: int, *, now: datetime, seed: int = 1) -> Iterator[Envelope]:
    """About nine events per lead: captured, sometimes disqualified, a handoff decision,
    a deal that opens, moves and closes, and a customer whose ARR changes."""
    rng = random.Random(seed)
    quarter_start = datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC)
    span = max(60.0, (now - quarter_start).total_seconds() - 60)
    for index in range(leads):
        lead_id = _uuid(rng)
        at = quarter_start + timedelta(seconds=rng.uniform(0, span))
        attribution = {"source": rng.choice(SOURCES), "campaign": f"c{index % 7}"}

        def later(minutes: float, start: datetime = at) -> datetime:
            return min(now, start + timedelta(minutes=minutes))

        yield LeadCaptured.new(
            source="bench", subject=lead_id, time=at,
            data={"lead_id": lead_id, "form_id": "default", "attribution": attribution,
                  "profile": {"email": f"bench-{seed}-{index}@example.com", "company_size": 120}},
        )  # fmt: skip
        if rng.random() < 0.1:
            yield LeadDisqualified.new(
                source="bench", subject=lead_id, time=later(1),
                data={"lead_id": lead_id, "score": -50, "reasons": [], "rules_version": "1",
                      "attribution": attribution},
            )  # fmt: skip
            continue
        handoff_id = _uuid(rng)
        decision = {
            "handoff_id": handoff_id, "lead_id": lead_id, "rep_id": "bench-rep", "team": "bench",
            "business_seconds_to_decision": rng.randint(60, 20_000),
            "within_sla": rng.random() < 0.8, "attribution": attribution,
        }  # fmt: skip
        if rng.random() < 0.2:
            yield HandoffRejected.new(
                source="bench", subject=handoff_id, time=later(30),
                data={**decision, "reason": "no_budget"},
            )  # fmt: skip
            continue
        yield HandoffAccepted.new(source="bench", subject=handoff_id, time=later(30), data=decision)
        deal_id = f"bench-deal-{seed}-{index}"
        amount_cents = rng.randint(1_000, 80_000) * 100
        deal = {
            "deal_id": deal_id, "lead_id": lead_id, "attribution": attribution,
            "amount_cents": amount_cents, "currency": "USD",
            "stage": STAGES[0], "expected_close_date": (now + timedelta(days=30)).date(),
        }  # fmt: skip
        yield DealOpened.new(source="bench", subject=deal_id, time=later(60), data=deal)
        deal = {**deal, "stage": rng.choice(STAGES)}
        yield DealUpdated.new(source="bench", subject=deal_id, time=later(120), data=deal)
        closed_on: date = later(180).date()
        outcome = rng.random()
        if outcome < 0.3:
            yield DealLost.new(
                source="bench", subject=deal_id, time=later(180),
                data={**deal, "closed_on": closed_on, "reason": "price"},
            )  # fmt: skip
        elif outcome < 0.7:
            yield DealWon.new(
                source="bench", subject=deal_id, time=later(180),
                data={**deal, "closed_on": closed_on},
            )  # fmt: skip
            account_id = f"bench-account-{seed}-{index}"
            yield AccountActivated.new(
                source="bench", subject=account_id, time=later(240),
                data={"account_id": account_id, "arr_cents": amount_cents,
                      "currency": "USD", "deal_id": deal_id, "attribution": attribution},
            )  # fmt: skip
            yield AccountArrChanged.new(
                source="bench", subject=account_id, time=later(300),
                data={"account_id": account_id, "currency": "USD",
                      "arr_cents": amount_cents * rng.choice((1, 2))},
            )  # fmt: skip


async def produce(
    settings: CommonSettings, events: Iterator[Envelope]
) -> dict[TopicPartition, UUID]:
    """Put ``events`` on the platform's topics in order, keyed by entity, with ``acks=all``;
    returns the id of the last event written to each partition."""
    producer = new_producer(settings)
    await producer.start()
    try:
        sent = [
            (
                event.id,
                await producer.send(
                    settings.topic(event.topic), value=encode_event(event), key=event.key
                ),
            )
            for event in events
        ]
        last: dict[TopicPartition, tuple[int, UUID]] = {}
        for event_id, delivery in sent:
            metadata = await delivery
            partition = TopicPartition(metadata.topic, metadata.partition)
            if partition not in last or last[partition][0] < metadata.offset:
                last[partition] = (metadata.offset, event_id)
        return {partition: event_id for partition, (_, event_id) in last.items()}
    finally:
        await producer.stop()
