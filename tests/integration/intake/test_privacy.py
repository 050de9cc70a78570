"""lead-intake's `/v1/privacy/people`: a person's data exported, erased, and refused
precisely when asked badly (docs/privacy.md). The whole platform after an erasure is
tests/e2e/test_erasure.py."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from funnel_common.events import LEADS_TOPIC, PEOPLE_TOPIC, PersonErased
from funnel_common.settings import CommonSettings
from tests.helpers import eventually
from tests.integration.access import bearer, issued_token
from tests.integration.intake.conftest import events_on, imported
from tests.integration.kafka_helpers import read_topic

PERSON: dict[str, Any] = {
    "email": "Ada.Lovelace@Engine.example",
    "phone": "+44 20 7946 0958",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "title": "VP Engineering",
    "company": "Analytical Engines",
    "company_size": 500,
    "country": "GB",
    "utm_source": "linkedin",
    "favourite_colour": "teal",
}
PEOPLE = "/v1/privacy/people"


async def _admin(database_url: str, topics: CommonSettings) -> dict[str, str]:
    token = await issued_token(
        database_url, "intake", topics.auth_secret, role="admin", subject="dpo"
    )
    return bearer(token)


async def test_a_person_is_exported_then_erased_once_keeping_what_is_not_personal(
    intake: httpx.AsyncClient, database_url: str, topics: CommonSettings
) -> None:
    admin = await _admin(database_url, topics)
    first = await intake.post("/v1/leads", **imported(PERSON))
    assert first.status_code == 202, first.text
    lead_id = first.json()["lead_id"]
    merged = await intake.post("/v1/leads", **imported({**PERSON, "utm_campaign": "again"}))
    assert merged.status_code == 202, merged.text

    # Matched as dedupe matches: another case is the same person.
    found = await intake.get(PEOPLE, params={"email": "ada.lovelace@engine.EXAMPLE"}, headers=admin)
    assert found.status_code == 200, found.text
    [lead] = found.json()["leads"]
    assert found.json()["lead_ids"] == [lead_id]
    assert lead["profile"]["last_name"] == "Lovelace"
    assert lead["extra"] == {"favourite_colour": "teal"}
    assert [touch["attribution"]["campaign"] for touch in lead["touches"]] == ["again"]

    erased = await intake.delete(PEOPLE, params={"email": PERSON["email"]}, headers=admin)
    again = await intake.delete(f"{PEOPLE}/{lead_id}", headers=admin)

    assert (erased.status_code, again.status_code) == (204, 204)
    by_email = await intake.get(PEOPLE, params={"email": PERSON["email"]}, headers=admin)
    assert by_email.json() == {"lead_ids": [], "leads": []}
    [kept] = (await intake.get(f"{PEOPLE}/{lead_id}", headers=admin)).json()["leads"]
    assert kept["erased_at"] is not None
    assert kept["profile"] == {
        "company": "Analytical Engines",
        "company_size": 500,
        "country": "GB",
    }
    assert kept["extra"] == {}
    assert (kept["status"], kept["score"]) == (lead["status"], lead["score"])
    assert kept["attribution"] == lead["attribution"]
    # One audit event (the second erasure found nothing left to erase), ids only, and a
    # tombstone for the key on funnel.people.
    events = await events_on(topics, LEADS_TOPIC, expect=4, subject=lead_id)
    [audit] = [event for event in events if isinstance(event, PersonErased)]
    assert (audit.data.requested_by, audit.data.matched_by) == ("dpo", "email")
    assert "lovelace" not in audit.model_dump_json().lower()

    async def tombstones() -> list[bytes | None]:
        records = await read_topic(topics, PEOPLE_TOPIC, expect=2, timeout=2)
        return [r.key for r in records if r.value is None]

    assert await eventually(tombstones, until=bool, timeout=15, what="the key's tombstone") == [
        lead_id.encode()
    ]
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "intake"})
    try:
        keys = await connection.fetchval(
            "SELECT count(*) FROM person_keys WHERE person_id = $1", UUID(lead_id)
        )
        audited = await connection.fetch("SELECT requested_by, lead_ids FROM erasures")
    finally:
        await connection.close()
    assert keys == 0
    assert [(row["requested_by"], [str(i) for i in row["lead_ids"]]) for row in audited] == [
        ("dpo", [lead_id])
    ]

    # The person asking again is a new lead.
    back = await intake.post("/v1/leads", **imported({**PERSON, "utm_campaign": "back"}))
    assert back.status_code == 202, back.text
    assert back.json()["lead_id"] != lead_id


async def test_bad_requests_are_precise_problems(
    intake: httpx.AsyncClient, database_url: str, topics: CommonSettings
) -> None:
    admin = await _admin(database_url, topics)

    answers = {
        "not an email": await intake.get(PEOPLE, params={"email": "ada at engine"}, headers=admin),
        "no email": await intake.delete(PEOPLE, headers=admin),
        "not an id": await intake.delete(f"{PEOPLE}/lead-7", headers=admin),
        "unknown id": await intake.delete(f"{PEOPLE}/{uuid4()}", headers=admin),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "not an email": 422,
        "no email": 422,
        "not an id": 422,
        "unknown id": 404,
    }
    for answer in answers.values():
        assert answer.headers["content-type"] == "application/problem+json"
    assert answers["unknown id"].json()["type"] == "/problems/unknown-lead"
    assert [e["field"] for e in answers["not an email"].json()["errors"]] == ["query.email"]
    assert [e["field"] for e in answers["no email"].json()["errors"]] == ["query.email"]
