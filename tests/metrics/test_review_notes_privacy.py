"""The review pack's example notes and erasure, against real PostgreSQL and broker:
a sealed ``.v2`` note shows in the pack (opened with metrics' copy of the lead's key
from ``funnel.people``); once the person is erased their notes (sealed or ``.v1`` in
clear) and key are gone from metrics' tables and from the pack, a rejection or key
re-delivered or heard after the erasure, or replayed, brings nothing back, and no
figure changes (docs/privacy.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from funnel_common.events import (
    Envelope,
    HandoffRejected,
    HandoffRejectedV2,
    PersonErased,
    PersonErasedData,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.integration.access import issued_token
from tests.integration.handoff.support import KEYRING, PERSON_KEYS, key_issued
from tests.metrics.stories import NOTE, SPRING, _handoff, _lead, three_campaigns
from tests.metrics.support import produce, running_metrics
from tests.metrics.test_review import QUARTER, review_settings

NOW = utc_now()
SEALED_NOTE = "Jane Roe runs a reseller, call her on +44 20 7946 0000 next year"
LATE_NOTE = "Written about a person already erased"


def _sealed_rejection(note: str, minutes: int) -> tuple[UUID, list[Envelope]]:
    """A lead and its rejection, its note sealed with the lead's key (``.v2``)."""
    at = NOW - timedelta(days=10)
    lead_id, lead = _lead(SPRING, at)
    key = PERSON_KEYS.setdefault(lead_id, KEYRING.new_key(lead_id))
    handoff_id, common, assigned = _handoff(lead_id, SPRING, at + timedelta(minutes=2))
    rejected = HandoffRejectedV2.new(
        source="handoff",
        subject=handoff_id,
        time=at + timedelta(minutes=minutes),
        data={
            **common,
            "rep_id": "ada",
            "reason": "not_a_fit",
            "sealed_note": key.seal(note, "note"),
            "business_seconds_to_decision": 1080,
            "within_sla": True,
            "attribution": SPRING,
        },
    )
    return lead_id, [*lead, assigned, rejected]


def _erased(lead_id: UUID) -> PersonErased:
    return PersonErased.new(
        source="lead-intake",
        subject=lead_id,
        data=PersonErasedData(
            lead_id=lead_id, erasure_id=uuid4(), requested_by="dpo", matched_by="lead_id"
        ),
    )


async def _tombstone(topics: CommonSettings, lead_id: UUID) -> None:
    """What lead-intake publishes on the compacted ``funnel.people`` with the erasure."""
    producer = new_producer(topics)
    await producer.start()
    try:
        await producer.send(topics.topic("funnel.people"), value=None, key=str(lead_id).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _rows(database_url: str, query: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await connection.fetch(query, *args)]
    finally:
        await connection.close()


async def _notes(client: httpx.AsyncClient, token: str) -> dict[str, list[str]]:
    answer = await client.get("/v1/review", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    notes: dict[str, list[str]] = answer.json()["notes"]
    return notes


async def _funnel(client: httpx.AsyncClient) -> Any:
    return (await client.get("/v1/funnel", params={"period": QUARTER})).json()


async def _applied(database_url: str, events: Sequence[Envelope]) -> None:
    ids = [event.id for event in events]

    async def seen() -> int:
        rows = await _rows(
            database_url, "SELECT event_id FROM metrics.inbox WHERE event_id = ANY($1)", ids
        )
        return len(rows)

    await eventually(seen, until=lambda n: n == len(ids), timeout=30, what="events applied")


async def test_a_sealed_note_shows_until_its_person_is_erased_and_never_comes_back(
    database_url: str, topics: CommonSettings
) -> None:
    from metrics.replay import replay

    settings = review_settings(database_url, topics)
    story = three_campaigns(NOW)
    # The story's .v1 rejection, its note in clear, from before sealing.
    clear = next(e for e in story if type(e) is HandoffRejected and e.data.note == NOTE)
    clear_lead = clear.data.lead_id
    sealed_lead, sealed = _sealed_rejection(SEALED_NOTE, minutes=30)
    late_lead, late = _sealed_rejection(LATE_NOTE, minutes=40)
    keys_of = "SELECT person_id FROM metrics.person_keys WHERE person_id = ANY($1::uuid[])"
    notes_of = "SELECT note FROM metrics.rejection_notes WHERE lead_id = ANY($1::uuid[])"
    everyone = [clear_lead, sealed_lead, late_lead]

    async with running_metrics(settings) as client:
        token = await issued_token(database_url, "metrics", topics.auth_secret, role="marketing")
        # The late person is erased before their key and rejection are heard (another
        # partition, another topic: any order can happen).
        await produce(topics, [*story, key_issued(sealed_lead), *sealed, _erased(late_lead)])
        shown = await eventually(
            lambda: _notes(client, token),
            until=lambda notes: notes.get("not_a_fit") == [SEALED_NOTE, NOTE],
            timeout=30,
            what="the sealed note opened in the pack",
        )
        late_key = key_issued(late_lead)
        await produce(topics, [late_key, *late])
        await _applied(database_url, [late_key, *late])
        assert await _rows(database_url, keys_of, [late_lead]) == []
        assert await _rows(database_url, notes_of, [late_lead]) == []
        before = await _funnel(client)
        # The sealed note is kept sealed: metrics' table never holds it in clear.
        [(stored,)] = await _rows(database_url, notes_of, [sealed_lead])
        assert stored.startswith("sealed.v1.")
        assert SEALED_NOTE not in stored

        erasures = [_erased(clear_lead), _erased(sealed_lead)]
        await produce(topics, erasures)
        await _tombstone(topics, sealed_lead)
        await _applied(database_url, erasures)
        assert await _notes(client, token) == {}
        # Re-delivered as they were, and a rejection sent again under a new id.
        rejected = sealed[-1]
        again = rejected.model_copy(update={"id": uuid4()})
        await produce(topics, [key_issued(sealed_lead), rejected, clear, again])
        await _applied(database_url, [again])

        after = {
            "keys": await _rows(database_url, keys_of, everyone),
            "notes": await _rows(database_url, notes_of, everyone),
            "pack": await _notes(client, token),
            "funnel": await _funnel(client),
        }
        replayed = await replay(settings)
        # The test's token was written straight into the old schema, not on a topic.
        token = await issued_token(database_url, "metrics", topics.auth_secret, role="marketing")
        rebuilt = {
            "keys": await _rows(database_url, keys_of, everyone),
            "notes": await _rows(database_url, notes_of, everyone),
            "pack": await _notes(client, token),
            "funnel": await _funnel(client),
        }

    assert shown == {"not_a_fit": [SEALED_NOTE, NOTE]}
    assert after == {"keys": [], "notes": [], "pack": {}, "funnel": before}
    assert replayed.switched
    assert (replayed.differences, replayed.missing) == ([], 0)
    assert rebuilt == after
    erased = await _rows(database_url, "SELECT person_id FROM metrics.erased_people")
    assert sorted(erased) == sorted((lead,) for lead in everyone)
