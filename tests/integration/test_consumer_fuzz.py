"""Arbitrary records on a real topic, through the real consumer: DLQ, never a crash.

Hypothesis draws the records: random bytes, truncated events, events whose payload is
any JSON, tombstones, random keys and headers, and valid events carrying random
headers. Every record that is not an event ends in ``funnel.dlq`` with the error and
its original bytes; every valid one is applied, including one produced after all the
junk, so the consumer kept going.
"""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnel_common.events import LEADS_TOPIC, LeadCaptured, encode_event
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from tests.helpers import eventually
from tests.integration.test_consumer import (
    _effects,
    _lead,
    consuming,
    dead_letters,
    pool,
    record_effect,
)

__all__ = ["pool"]  # the fixture, shared with the consumer's own tests

RECORDS = 40
VALID = encode_event(_lead())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
junk = st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(VALID) - 1).map(lambda cut: VALID[:cut]),
    json_values.map(
        lambda data: VALID.replace(
            b'"data":{', b'"data":' + json.dumps(data).encode() + b',"x":{', 1
        )
    ),
    st.just(VALID.replace(b"Acme", b"Ac\\u0000me")),
    st.none(),
)
# A null header value is legal on the wire, though no client of ours sends one.
headers = st.lists(st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=60)), max_size=4)
keys = st.none() | st.binary(max_size=40)
# (value or None for a valid event, key, headers)
Headers = list[tuple[str, bytes | None]]
Record = tuple[bytes | None, bytes | None, Headers, bool]
records = st.tuples(junk, keys, headers, st.just(False)) | st.tuples(
    st.none(), keys, headers, st.just(True)
)


def _draw_records() -> list[Record]:
    drawn: list[Record] = []

    @settings(max_examples=RECORDS, database=None, suppress_health_check=list(HealthCheck))
    @given(records)
    def collect(record: Record) -> None:
        drawn.append(record)

    collect()
    return drawn


async def _produce(
    topics: CommonSettings, drawn: list[tuple[bytes | None, bytes | None, Headers]]
) -> None:
    producer = new_producer(topics)
    await producer.start()
    try:
        for value, key, extra_headers in drawn:
            # Kafka needs a key or a value: a tombstone is keyed.
            if value is None and key is None:
                key = b"tombstone"
            await producer.send_and_wait(
                topics.topic(LEADS_TOPIC), value, key=key, headers=extra_headers
            )
    finally:
        await producer.stop()


def _original(value: bytes | None) -> dict[str, str]:
    raw = value or b""
    try:
        return {"text": raw.decode()}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


@pytest.mark.both_brokers
async def test_arbitrary_records_are_dead_lettered_and_the_consumer_keeps_applying_events(
    pool: asyncpg.Pool, database_url: str, topics: CommonSettings
) -> None:
    drawn = _draw_records()
    produced: list[tuple[bytes | None, bytes | None, Headers]] = []
    valid_events: list[LeadCaptured] = []
    for value, key, extra_headers, is_valid in drawn:
        if is_valid:
            event = _lead()
            valid_events.append(event)
            value = encode_event(event)
        produced.append((value, key, extra_headers))
    last = _lead()
    produced.append((encode_event(last), b"last", []))
    junk_values = [
        value for (value, _, _), (*_, ok) in zip(produced, drawn, strict=False) if not ok
    ]

    async with consuming(pool, topics, {LeadCaptured: record_effect}, relay_dsn=database_url):
        await _produce(topics, produced)
        await eventually(
            lambda: _effects(pool),
            until=lambda n: n == len(valid_events) + 1,
            timeout=30,
            what="every valid event applied, the last one included",
        )
        letters = await eventually(
            lambda: dead_letters(topics, expect=len(junk_values)),
            until=lambda found: len(found) >= len(junk_values),
            timeout=30,
            what=f"{len(junk_values)} dead letters",
        )

    assert len(letters) == len(junk_values), drawn
    assert {letter["kind"] for letter in letters} <= {"undecodable"}
    assert all(letter["error"] for letter in letters)
    assert sorted(json.dumps(letter["original"]) for letter in letters) == sorted(
        json.dumps(_original(value)) for value in junk_values
    )
    applied = {row["lead_id"] for row in await pool.fetch("SELECT lead_id FROM effects")}
    assert applied == {event.data.lead_id for event in [*valid_events, last]}
