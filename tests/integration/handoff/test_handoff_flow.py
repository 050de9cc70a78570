"""Routing, the rep's decisions and SLA breaches against real PostgreSQL.

The SLA scanner is driven here with an explicit clock (``scan(now=...)``), so a
four-hour SLA breaches in a test that takes milliseconds; test_sla_replicas.py runs the
real background scanners.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import UUID

from funnel_common.types import utc_now
from tests.integration.handoff.support import PERSON_KEYS, Handoffs, lead_event, policy_body

EVENT = "funnel.handoff.{}.v1"
REJECTED = "funnel.handoff.rejected.v2"


async def _two_rep_team(handoffs: Handoffs, **options: object) -> None:
    await handoffs.setup_team("emea", {"ada": {}, "bob": {}}, countries=["DE"], **options)  # type: ignore[arg-type]


async def test_a_qualified_lead_is_routed_to_a_rep_and_evented(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE", "FR"], minutes=240)
    await handoffs.setup_team("amer", {"zed": {}}, countries=["US"])
    now = utc_now()

    handoff_id = await handoffs.qualify_directly(lead_event(country="FR"), now=now)

    row = await handoffs.handoff(handoff_id)
    assert (row["team_id"], row["rep_id"], row["status"]) == ("emea", "ada", "assigned")
    [assigned] = await handoffs.events(EVENT.format("assigned"), handoff_id)
    assert assigned["data"]["assignee_rep_id"] == "ada"
    assert assigned["data"]["team"] == "emea"
    assert assigned["data"]["policy"] == "emea-sla"
    assert assigned["data"]["attribution"] == {
        "source": "webinar",
        "campaign": "q4-launch",
        "utm": {},
    }
    due = datetime.fromisoformat(assigned["data"]["due_at"])
    assert due - now == timedelta(minutes=240)


async def test_without_an_eligible_rep_the_handoff_waits_visibly_then_drains(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {"active": False}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    manager = await handoffs.auth("manager", "emea-manager", "emea")

    queue = (await handoffs.client.get("/v1/handoffs", headers=manager)).json()["items"]
    [waiting] = await handoffs.events(EVENT.format("assigned"), handoff_id)

    assert [(item["handoff_id"], item["status"]) for item in queue] == [(str(handoff_id), "queued")]
    assert waiting["data"]["assignee_rep_id"] is None
    assert waiting["data"]["due_at"] is None

    await handoffs.put("/v1/reps/ada", {"team_id": "emea", "capacity": 5, "active": True})
    result = await handoffs.scan(utc_now())

    assert result.assigned_from_queue == 1
    assert (await handoffs.handoff(handoff_id))["rep_id"] == "ada"
    events = await handoffs.events(EVENT.format("assigned"), handoff_id)
    assert [event["data"]["assignee_rep_id"] for event in events] == [None, "ada"]


async def test_capacity_is_respected(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 1}}, countries=["DE"])

    first = await handoffs.qualify_directly()
    second = await handoffs.qualify_directly()

    assert (await handoffs.handoff(first))["status"] == "assigned"
    assert (await handoffs.handoff(second))["status"] == "queued"


async def test_the_queue_is_soonest_due_first_and_filters_by_status(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    start = utc_now()
    later = await handoffs.qualify_directly(now=start)
    sooner = await handoffs.qualify_directly(now=start - timedelta(minutes=5))
    decided = await handoffs.qualify_directly(now=start - timedelta(minutes=10))
    ada = await handoffs.auth("rep", "ada")
    accepted = await handoffs.client.post(f"/v1/handoffs/{decided}/accept", headers=ada)
    assert accepted.status_code == 200, accepted.text

    open_queue = await handoffs.client.get("/v1/handoffs", headers=ada)
    accepted_only = await handoffs.client.get("/v1/handoffs?status=accepted", headers=ada)
    bad_status = await handoffs.client.get("/v1/handoffs?status=lost", headers=ada)

    assert [item["handoff_id"] for item in open_queue.json()["items"]] == [str(sooner), str(later)]
    assert [item["handoff_id"] for item in accepted_only.json()["items"]] == [str(decided)]
    assert bad_status.status_code == 422
    assert bad_status.headers["content-type"] == "application/problem+json"


async def test_accept_is_evented_with_business_time_and_decided_once(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"], minutes=60)
    handoff_id = await handoffs.qualify_directly(now=utc_now() - timedelta(minutes=10))
    ada = await handoffs.auth("rep", "ada")

    first = await handoffs.client.post(f"/v1/handoffs/{handoff_id}/accept", headers=ada)
    again = await handoffs.client.post(f"/v1/handoffs/{handoff_id}/accept", headers=ada)

    assert first.status_code == 200
    assert first.json()["within_sla"] is True
    assert 600 <= first.json()["business_seconds_to_decision"] < 660
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/handoff-conflict"
    assert again.json()["current_status"] == "accepted"
    assert "already accepted" in again.json()["detail"]
    [event] = await handoffs.events(EVENT.format("accepted"), handoff_id)
    assert event["data"]["rep_id"] == "ada"
    assert event["data"]["within_sla"] is True
    assert (
        event["data"]["business_seconds_to_decision"]
        == first.json()["business_seconds_to_decision"]
    )


async def test_reject_needs_a_known_reason_and_other_needs_a_note(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    ada = await handoffs.auth("rep", "ada")
    url = f"/v1/handoffs/{handoff_id}/reject"

    unknown = await handoffs.client.post(url, json={"reason": "too_busy"}, headers=ada)
    no_note = await handoffs.client.post(url, json={"reason": "other"}, headers=ada)
    done = await handoffs.client.post(
        url, json={"reason": "other", "note": "reseller, not a buyer"}, headers=ada
    )

    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "reason"
    assert no_note.status_code == 422
    assert "needs a note" in no_note.json()["errors"][0]["message"]
    assert done.status_code == 200
    assert done.json()["handoff"]["status"] == "rejected"
    [event] = await handoffs.events(REJECTED, handoff_id)
    assert event["data"]["reason"] == "other"
    key = PERSON_KEYS[UUID(event["data"]["lead_id"])]  # the note travels sealed
    assert key.open(event["data"]["sealed_note"], "note") == "reseller, not a buyer"


async def test_wrong_territory_routes_the_lead_to_another_team(handoffs: Handoffs) -> None:
    await handoffs.setup_team("dach", {"ada": {}}, countries=["DE"], priority=10)
    await handoffs.setup_team("global", {"gus": {}})
    handoff_id = await handoffs.qualify_directly()
    ada = await handoffs.auth("rep", "ada")

    answer = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reject", json={"reason": "wrong_territory"}, headers=ada
    )

    assert answer.status_code == 200
    row = await handoffs.handoff(handoff_id)
    assert (row["team_id"], row["rep_id"], row["status"]) == ("global", "gus", "assigned")
    [rejected] = await handoffs.events(REJECTED, handoff_id)
    [moved] = await handoffs.events(EVENT.format("reassigned"), handoff_id)
    assert rejected["data"]["reason"] == "wrong_territory"
    assert (moved["data"]["reason"], moved["data"]["from_rep_id"], moved["data"]["to_rep_id"]) == (
        "wrong_territory",
        "ada",
        "gus",
    )
    mine = await handoffs.client.get("/v1/handoffs", headers=ada)
    assert mine.json()["items"] == []


async def test_a_breach_fires_once_reassigns_then_escalates_to_the_manager(
    handoffs: Handoffs,
) -> None:
    await _two_rep_team(handoffs, minutes=4, reassign_up_to=1)
    start = utc_now()
    handoff_id = await handoffs.qualify_directly(now=start)
    first_rep = (await handoffs.handoff(handoff_id))["rep_id"]

    early = await handoffs.scan(start + timedelta(minutes=3, seconds=59))
    first = await handoffs.scan(start + timedelta(minutes=4))
    repeat = await handoffs.scan(start + timedelta(minutes=4, seconds=1))

    assert (early.at_risk, early.breached) == (1, 0)
    assert (first.breached, repeat.breached) == (1, 0)
    row = await handoffs.handoff(handoff_id)
    second_rep = row["rep_id"]
    assert {first_rep, second_rep} == {"ada", "bob"}
    assert row["due_at"] == start + timedelta(minutes=8)

    escalation = await handoffs.scan(start + timedelta(minutes=8))

    assert escalation.breached == 1
    row = await handoffs.handoff(handoff_id)
    assert (row["status"], row["rep_id"], row["due_at"]) == ("escalated", "emea-manager", None)
    breaches = await handoffs.events(EVENT.format("sla_breached"), handoff_id)
    moves = await handoffs.events(EVENT.format("reassigned"), handoff_id)
    at_risk = await handoffs.events(EVENT.format("sla_at_risk"), handoff_id)
    assert [event["data"]["rep_id"] for event in breaches] == [first_rep, second_rep]
    assert [(m["data"]["reason"], m["data"]["to_rep_id"]) for m in moves] == [
        ("sla_breach", second_rep),
        ("escalation", "emea-manager"),
    ]
    assert len(at_risk) == 1


async def test_the_rep_who_lost_a_handoff_to_a_breach_gets_a_clear_409(handoffs: Handoffs) -> None:
    await _two_rep_team(handoffs, minutes=1)
    start = utc_now()
    handoff_id = await handoffs.qualify_directly(now=start)
    loser = (await handoffs.handoff(handoff_id))["rep_id"]
    await handoffs.scan(start + timedelta(minutes=2))

    answer = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/accept", headers=await handoffs.auth("rep", loser)
    )

    assert answer.status_code == 409
    assert answer.json()["detail"] == "the handoff was reassigned away from you"


async def test_accepting_after_due_is_outside_the_sla(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"], minutes=1)
    handoff_id = await handoffs.qualify_directly(now=utc_now() - timedelta(minutes=2))

    answer = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/accept", headers=await handoffs.auth("rep", "ada")
    )

    assert answer.status_code == 200
    assert answer.json()["within_sla"] is False


async def test_accept_reject_and_reassign_racing_are_decided_once(handoffs: Handoffs) -> None:
    await _two_rep_team(handoffs)
    manager = await handoffs.auth("manager", "emea-manager", "emea")
    for _ in range(5):
        handoff_id = await handoffs.qualify_directly()
        owner = await handoffs.auth("rep", (await handoffs.handoff(handoff_id))["rep_id"])
        base = f"/v1/handoffs/{handoff_id}"

        answers = await asyncio.gather(
            handoffs.client.post(f"{base}/accept", headers=owner),
            handoffs.client.post(f"{base}/reject", json={"reason": "no_budget"}, headers=owner),
            handoffs.client.post(f"{base}/reassign", headers=manager),
        )

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 409, 409], [a.text for a in answers]
        for answer in answers:
            if answer.status_code == 409:
                assert answer.json()["type"] == "/problems/handoff-conflict"
                assert answer.json()["detail"]
        decisions = [
            *await handoffs.events(EVENT.format("accepted"), handoff_id),
            *await handoffs.events(REJECTED, handoff_id),
            *await handoffs.events(EVENT.format("reassigned"), handoff_id),
        ]
        assert len(decisions) == 1


async def test_a_breach_and_an_accept_racing_are_decided_once(handoffs: Handoffs) -> None:
    await _two_rep_team(handoffs, minutes=1)
    for _ in range(5):
        start = utc_now() - timedelta(minutes=2)
        handoff_id = await handoffs.qualify_directly(now=start)
        owner = await handoffs.auth("rep", (await handoffs.handoff(handoff_id))["rep_id"])

        accepted, scanned = await asyncio.gather(
            handoffs.client.post(f"/v1/handoffs/{handoff_id}/accept", headers=owner),
            handoffs.scan(utc_now()),
        )

        breaches = await handoffs.events(EVENT.format("sla_breached"), handoff_id)
        accepts = await handoffs.events(EVENT.format("accepted"), handoff_id)
        assert scanned.breached == len(breaches)
        if accepted.status_code == 200:
            assert (len(accepts), len(breaches)) == (1, 0)
        else:
            assert accepted.status_code == 409
            assert (len(accepts), len(breaches)) == (0, 1)
        await handoffs.client.post(
            f"/v1/handoffs/{handoff_id}/reject",
            json={"reason": "duplicate"},
            headers=await handoffs.auth("admin", "root"),
        )


async def test_concurrent_scanners_fire_a_breach_once(handoffs: Handoffs) -> None:
    await _two_rep_team(handoffs, minutes=1)
    start = utc_now()
    ids: list[UUID] = [await handoffs.qualify_directly(now=start) for _ in range(6)]

    results = await asyncio.gather(*(handoffs.scan(start + timedelta(minutes=1)) for _ in range(6)))

    assert sum(result.breached for result in results) == 6
    for handoff_id in ids:
        assert len(await handoffs.events(EVENT.format("sla_breached"), handoff_id)) == 1
        assert len(await handoffs.events(EVENT.format("reassigned"), handoff_id)) == 1


async def test_a_manager_reassigns_to_a_named_rep(handoffs: Handoffs) -> None:
    await _two_rep_team(handoffs)
    handoff_id = await handoffs.qualify_directly()
    current = (await handoffs.handoff(handoff_id))["rep_id"]
    other = "bob" if current == "ada" else "ada"
    manager = await handoffs.auth("manager", "emea-manager", "emea")

    moved = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reassign", json={"rep_id": other}, headers=manager
    )
    unknown = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reassign", json={"rep_id": "nobody"}, headers=manager
    )

    assert moved.status_code == 200
    assert moved.json()["handoff"]["rep_id"] == other
    assert unknown.status_code == 422
    [event] = await handoffs.events(EVENT.format("reassigned"), handoff_id)
    assert (event["data"]["from_rep_id"], event["data"]["to_rep_id"], event["data"]["reason"]) == (
        current,
        other,
        "manager",
    )


async def test_round_robin_state_persists_across_handoffs_by_weight(handoffs: Handoffs) -> None:
    await handoffs.setup_team(
        "emea", {"ada": {"weight": 2}, "bob": {"weight": 1}}, countries=["DE"]
    )

    ids = [await handoffs.qualify_directly() for _ in range(6)]

    reps = [(await handoffs.handoff(handoff_id))["rep_id"] for handoff_id in ids]
    assert sorted(reps) == ["ada", "ada", "ada", "ada", "bob", "bob"]


async def test_a_demo_request_gets_the_team_policy_for_its_form_type(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"], minutes=240)
    await handoffs.put("/v1/sla-policies/demo", policy_body(15))
    [team] = (await handoffs.client.get("/v1/teams", headers=await handoffs.admin())).json()
    del team["team_id"]
    await handoffs.put("/v1/teams/emea", {**team, "form_type_policies": {"demo_request": "demo"}})
    start = utc_now()

    demo = await handoffs.qualify_directly(lead_event(form_type="demo_request"), now=start)
    other = await handoffs.qualify_directly(lead_event(form_type="newsletter"), now=start)

    assert (await handoffs.handoff(demo))["due_at"] == start + timedelta(minutes=15)
    assert (await handoffs.handoff(demo))["policy_name"] == "demo"
    assert (await handoffs.handoff(other))["due_at"] == start + timedelta(minutes=240)


async def test_a_lead_no_team_matches_waits_unrouted_until_a_team_covers_it(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("amer", {"zed": {}}, countries=["US"])
    handoff_id = await handoffs.qualify_directly(lead_event(country="JP"))
    assert (await handoffs.handoff(handoff_id))["team_id"] == "unrouted"
    assert (await handoffs.scan(utc_now())).assigned_from_queue == 0

    await handoffs.setup_team("apac", {"kei": {}}, countries=["JP"])
    result = await handoffs.scan(utc_now())

    row = await handoffs.handoff(handoff_id)
    assert result.assigned_from_queue == 1
    assert (row["team_id"], row["rep_id"], row["status"]) == ("apac", "kei", "assigned")


async def test_metrics_show_open_and_due_soon_handoffs_by_team(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 1}}, countries=["DE"], minutes=5)
    await handoffs.qualify_directly()
    await handoffs.qualify_directly()

    text = (await handoffs.client.get("/metrics")).text

    assert 'funnel_handoff_open{status="assigned",team="emea"} 1.0' in text
    assert 'funnel_handoff_open{status="queued",team="emea"} 1.0' in text
    assert 'funnel_handoff_due_soon{team="emea"} 1.0' in text
    assert "example.com" not in text


async def test_bad_input_gets_precise_problems_not_500s(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    ada = await handoffs.auth("rep", "ada")
    admin = await handoffs.admin()

    nul_note = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reject",
        json={"reason": "other", "note": "bad\u0000note"},
        headers=ada,
    )
    unknown = await handoffs.client.post(
        "/v1/handoffs/00000000-0000-0000-0000-000000000000/accept", headers=ada
    )
    not_uuid = await handoffs.client.post("/v1/handoffs/42/accept", headers=ada)
    bad_hours = await handoffs.client.put(
        "/v1/reps/ada",
        json={
            "team_id": "emea",
            "capacity": 1,
            "working_hours": {"mon": [{"start": "18:00", "end": "09:00"}]},
        },
        headers=admin,
    )
    bad_zone = await handoffs.client.put(
        "/v1/sla-policies/x",
        json={
            "business_minutes": 5,
            "calendar": {
                "time_zone": "Mars/Base",
                "weekly_hours": {"mon": [{"start": "09:00", "end": "10:00"}]},
            },
        },
        headers=admin,
    )

    assert nul_note.status_code == 422
    assert nul_note.json()["errors"][0]["field"] == "note"
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert not_uuid.status_code == 422
    assert bad_hours.status_code == 422
    assert "start must be before" in bad_hours.text
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["field"] == "calendar.time_zone"
