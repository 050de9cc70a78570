"""handoff's copies of a person's data: exported for an admin, opened with the person's
key, and gone when the person is erased (docs/privacy.md)."""

from __future__ import annotations

from uuid import UUID, uuid4

from funnel_common import outbox, personal
from funnel_common.events import PersonErased, PersonErasedData
from handoff import people
from tests.integration.handoff.support import PERSON_KEYS, Handoffs, key_issued, lead_event

ADA = {"email": "ada@engine.example", "phone": "+442079460958", "last_name": "Lovelace"}
NOTE = "Ada said to call back on her mobile"


def _erased(lead_id: UUID) -> PersonErased:
    return PersonErased.new(
        source="lead-intake",
        subject=lead_id,
        data=PersonErasedData(
            lead_id=lead_id, erasure_id=uuid4(), requested_by="dpo", matched_by="email"
        ),
    )


async def _erase(handoffs: Handoffs, lead_id: UUID) -> None:
    """As the worker applies lead-intake's ``funnel.person.erased.v1``."""
    async with outbox.transaction(handoffs.pool) as connection:
        await people.on_person_erased(connection, _erased(lead_id))


async def test_an_admin_exports_a_lead_then_its_erasure_leaves_nothing_personal(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    event = lead_event(personal_data=ADA)
    lead_id = event.data.lead_id
    handoff_id = await handoffs.qualify_directly(event)
    rep = await handoffs.auth("rep", "ada")
    rejected = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reject", json={"reason": "other", "note": NOTE}, headers=rep
    )
    assert rejected.status_code == 200, rejected.text
    url = f"/v1/privacy/people/{lead_id}"

    refused = await handoffs.client.get(url, headers=rep)
    before = await handoffs.client.get(url, headers=await handoffs.admin())
    await _erase(handoffs, lead_id)
    after = await handoffs.client.get(url, headers=await handoffs.admin())

    assert refused.status_code == 403
    assert before.status_code == 200, before.text
    assert before.json()["erased"] is False
    [kept] = before.json()["handoffs"]
    assert (kept["profile"]["phone"], kept["profile"]["last_name"]) == ("+442079460958", "Lovelace")
    assert [d["note"] for d in before.json()["decisions"]] == [NOTE]
    assert after.json()["erased"] is True
    [blank] = after.json()["handoffs"]
    assert blank["profile"] == {
        "company": "Analytical Engines",
        "company_size": 10,
        "country": "DE",
    }
    assert [(d["reason"], d["note"]) for d in after.json()["decisions"]] == [("other", None)]
    async with handoffs.pool.acquire() as connection:
        keys = await connection.fetchval(
            "SELECT count(*) FROM person_keys WHERE person_id = $1", lead_id
        )
        rows = await connection.fetch("SELECT profile::text AS text FROM handoffs")
        notes = await connection.fetch("SELECT note FROM decisions WHERE note IS NOT NULL")
        # A key heard after the erasure (a late or replayed announcement) is not kept.
        late = await personal.store_key(connection, lead_id, PERSON_KEYS[lead_id].wrapped)
    assert keys == 0
    assert [row for row in rows if "personal" in row["text"]] == []
    assert notes == []
    assert late is False
    [outgoing] = await handoffs.events("funnel.handoff.rejected.v2", handoff_id)
    assert outgoing["data"]["sealed_note"] is None
    assert outgoing["data"]["reason"] == "other"


async def test_no_note_is_kept_about_an_erased_person_but_the_lead_can_still_be_decided(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    event = lead_event(personal_data=ADA)
    handoff_id = await handoffs.qualify_directly(event)
    await _erase(handoffs, event.data.lead_id)
    rep = await handoffs.auth("rep", "ada")
    url = f"/v1/handoffs/{handoff_id}/reject"

    with_note = await handoffs.client.post(
        url, json={"reason": "not_a_fit", "note": NOTE}, headers=rep
    )
    without = await handoffs.client.post(url, json={"reason": "not_a_fit"}, headers=rep)
    listed = await handoffs.client.get(f"/v1/handoffs/{handoff_id}", headers=rep)

    assert with_note.status_code == 409
    assert with_note.headers["content-type"] == "application/problem+json"
    assert with_note.json()["type"] == "/problems/person-erased"
    assert without.status_code == 200, without.text
    assert "email" not in listed.json()["profile"]


async def test_a_key_heard_on_funnel_people_opens_the_profile_for_the_rep(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    event = lead_event(personal_data=ADA)
    handoff_id = await handoffs.qualify_directly(event)
    async with outbox.transaction(handoffs.pool) as connection:
        await connection.execute("DELETE FROM person_keys")  # the key not heard yet
    rep = await handoffs.auth("rep", "ada")

    without_key = await handoffs.client.get(f"/v1/handoffs/{handoff_id}", headers=rep)
    async with outbox.transaction(handoffs.pool) as connection:
        await people.on_person_key_issued(connection, key_issued(event.data.lead_id))
    with_key = await handoffs.client.get(f"/v1/handoffs/{handoff_id}", headers=rep)

    assert "email" not in without_key.json()["profile"]
    assert with_key.json()["profile"]["email"] == "ada@engine.example"
