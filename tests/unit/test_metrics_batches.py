"""Replay batches: decoding and the handlers' recorded writes, without a database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg

from funnel_common.events import DealOpened, Envelope, LeadCaptured, encode_event
from metrics.batches import prepare
from metrics.handlers import handlers

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


async def test_a_batch_records_each_events_writes_and_counts_what_it_cannot_decode() -> None:
    first, second = lead(), lead()

    prepared = await prepare(handlers("USD"), records(first, b"not an event", second, deal("USD")))

    assert prepared.read == 4
    assert prepared.undecodable == 1
    assert [type(item.event) for item in prepared.decoded] == [
        LeadCaptured,
        LeadCaptured,
        DealOpened,
    ]
    assert [item.event.id for item in prepared.decoded[:2]] == [first.id, second.id]
    assert prepared.writes is not None
    assert [index for index, _, _ in prepared.writes] == [0, 1, 2]
    assert "INSERT INTO lead_stages" in prepared.writes[0][1]
    assert prepared.writes[0][2][1] == [first.data.lead_id]


async def test_an_event_its_handler_refuses_sends_the_batch_one_by_one() -> None:
    prepared = await prepare(handlers("USD"), records(lead(), deal("EUR"), lead()))

    assert prepared.writes is None
    assert len(prepared.decoded) == 3


async def test_a_handler_that_reads_sends_the_batch_one_by_one() -> None:
    async def reads(connection: asyncpg.Connection, event: Envelope) -> None:
        await connection.fetchval("SELECT 1")

    prepared = await prepare({LeadCaptured: reads}, records(lead()))

    assert prepared.writes is None


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

    prepared = await prepare(handlers("USD"), records(*(lead() for _ in range(1_000))))
    preparing = False
    await writing

    assert len(prepared.decoded) == 1_000
    assert turns_while_preparing - started >= 10
