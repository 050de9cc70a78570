"""Replay batches: decoding and the facts each event tells, without a database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from funnel_common.events import DealOpened, Envelope, LeadCaptured, encode_event
from metrics import facts
from metrics.batches import prepare
from metrics.facts import table

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@dataclass
class Record:
    value: bytes
    topic: str = "funnel.leads"
    partition: int = 0
    offset: int = 0


def lead() -> LeadCaptured:
    lead_id = uuid4()
    return LeadCaptured.new(
        source="test",
        subject=lead_id,
        time=NOW,
        data={
            "lead_id": lead_id,
            "form_id": "f",
            "attribution": {"source": "web"},
            "profile": {"email": "x@example.com"},
        },
    )


def deal(currency: str) -> DealOpened:
    return DealOpened.new(
        source="test",
        subject="opp-1",
        time=NOW,
        data={
            "deal_id": "opp-1",
            "attribution": {"source": "web"},
            "amount_cents": 100,
            "currency": currency,
            "stage": "proposal",
        },
    )


def records(*events: Envelope | bytes) -> list[Any]:
    return [
        Record(event if isinstance(event, bytes) else encode_event(event), offset=offset)
        for offset, event in enumerate(events)
    ]


async def test_a_batch_makes_each_events_facts_and_counts_what_it_cannot_decode() -> None:
    first, second = lead(), lead()

    prepared = await prepare(table("USD"), records(first, b"not an event", second, deal("USD")))

    assert (prepared.read, prepared.skipped) == (4, 1)
    assert [item.event.id for item in prepared.decoded] == [
        first.id,
        second.id,
        prepared.decoded[2].event.id,
    ]
    made = [fact for item in prepared.decoded for fact in item.facts]
    assert [type(fact) for fact in made] == [
        facts.LeadStage,
        facts.LeadStage,
        facts.DealDelivery,
    ]
    assert made[0] == facts.lead_stage(first)[0]


async def test_an_event_metrics_refuses_is_skipped_and_the_rest_of_the_batch_kept() -> None:
    before, after = lead(), lead()

    prepared = await prepare(table("USD"), records(before, deal("EUR"), after))

    assert prepared.skipped == 1
    assert [item.event.id for item in prepared.decoded] == [before.id, after.id]


async def test_preparing_a_big_batch_lets_the_writer_send_its_statements_meanwhile() -> None:
    # The writer is another task on the loop: a statement PostgreSQL has finished must
    # not wait for the whole next batch to be decoded before the following one is sent.
    turns_while_preparing = 0
    preparing = True

    async def writer() -> None:
        nonlocal turns_while_preparing
        while preparing:
            turns_while_preparing += 1
            await asyncio.sleep(0)

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0)  # the writer is waiting for its turn
    started = turns_while_preparing

    prepared = await prepare(table("USD"), records(*(lead() for _ in range(1_000))))
    preparing = False
    await writing

    assert len(prepared.decoded) == 1_000
    assert turns_while_preparing - started >= 10
