"""Roster changes are audited events: who changed which rep, team or policy, and how."""

from __future__ import annotations

from typing import Any

from tests.integration.handoff.support import Handoffs, policy_body

REP_CHANGED = "funnel.roster.rep_changed.v1"
TEAM_CHANGED = "funnel.roster.team_changed.v1"
POLICY_CHANGED = "funnel.roster.sla_policy_changed.v1"
NINE_TO_FIVE = {"mon": [{"start": "09:00", "end": "17:00"}]}


def _changes(event: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["before"], c["after"]) for c in event["data"]["changes"]}


async def test_a_managers_rep_changes_are_events_naming_who_changed_what(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {})
    mia = await handoffs.auth("manager", "mia", "emea")
    rep = {"team_id": "emea", "capacity": 5, "email": "ada@sales.example.com"}

    created = await handoffs.client.put("/v1/reps/ada", json=rep, headers=mia)
    same = await handoffs.client.put("/v1/reps/ada", json=rep, headers=mia)
    hours = {**rep, "capacity": 8, "time_zone": "Europe/Berlin", "working_hours": NINE_TO_FIVE}
    changed = await handoffs.client.put("/v1/reps/ada", json=hours, headers=mia)

    assert [created.status_code, same.status_code, changed.status_code] == [200, 200, 200]
    first, second = await handoffs.events(REP_CHANGED)  # the same PUT again says nothing
    assert first["subject"] == "ada"
    assert (first["data"]["changed_by"], first["data"]["changed_by_role"]) == ("mia", "manager")
    assert first["data"]["created"] is True
    assert _changes(first)["capacity"] == (None, 5)
    # Contact details are named as changed, their values left out of the topic.
    assert _changes(first)["email"] == (None, None)
    assert "ada@sales.example.com" not in str(first)
    assert second["data"]["created"] is False
    assert _changes(second) == {
        "capacity": (5, 8),
        "time_zone": ("UTC", "Europe/Berlin"),
        "working_hours": (None, NINE_TO_FIVE),
    }


async def test_team_and_policy_changes_are_audited_without_webhook_urls(
    handoffs: Handoffs,
) -> None:
    await handoffs.put("/v1/sla-policies/std", policy_body(60))
    await handoffs.put("/v1/sla-policies/std", policy_body(30))
    secret_url = "https://hooks.slack.com/services/T0/B0/very-secret"
    await handoffs.put("/v1/teams/emea", {"countries": ["DE"], "sla_policy": "std"})
    await handoffs.put(
        "/v1/teams/emea",
        {"countries": ["DE", "AT"], "sla_policy": "std", "webhooks": [{"url": secret_url}]},
    )

    policies = await handoffs.events(POLICY_CHANGED)
    teams = await handoffs.events(TEAM_CHANGED)

    assert [event["data"]["created"] for event in policies] == [True, False]
    assert _changes(policies[1]) == {"business_minutes": (60, 30)}
    assert policies[1]["data"]["changed_by"] == "root"
    assert _changes(teams[1]) == {"countries": (["DE"], ["DE", "AT"]), "webhooks": (None, None)}
    assert secret_url not in str(teams)


async def test_a_reassignment_names_the_manager_who_made_it(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}, "bob": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    mia = await handoffs.auth("manager", "mia", "emea")
    holder = (await handoffs.handoff(handoff_id))["rep_id"]
    other = "bob" if holder == "ada" else "ada"

    answer = await handoffs.client.post(
        f"/v1/handoffs/{handoff_id}/reassign", json={"rep_id": other}, headers=mia
    )

    assert answer.status_code == 200, answer.text
    [moved] = await handoffs.events("funnel.handoff.reassigned.v1", handoff_id)
    assert (moved["data"]["reason"], moved["data"]["by"]) == ("manager", "mia")


async def test_a_policy_that_could_never_breach_or_be_met_is_refused_when_set(
    handoffs: Handoffs,
) -> None:
    body = {
        "business_minutes": 60,
        "calendar": {
            "weekly_hours": {"sat": [{"start": "10:00", "end": "11:00"}]},
            "holidays": [f"2026-{month:02d}-{day:02d}" for month in (1, 2) for day in (3, 10)],
        },
    }
    empty = {"business_minutes": 60, "calendar": {"weekly_hours": {"mon": []}}}
    never = {**body, "business_minutes": 60 * 24 * 365}

    answers = [
        await handoffs.client.put(
            f"/v1/sla-policies/{name}", json=policy, headers=await handoffs.admin()
        )
        for name, policy in (("fine", body), ("empty", empty), ("never", never))
    ]

    assert [answer.status_code for answer in answers] == [200, 422, 422]
    assert [e["field"] for e in answers[1].json()["errors"]] == ["calendar.weekly_hours"]
    assert [e["field"] for e in answers[2].json()["errors"]] == ["calendar"]
    assert answers[2].headers["content-type"] == "application/problem+json"
    assert await handoffs.events(POLICY_CHANGED) == [await _only(handoffs, "fine")]


async def _only(handoffs: Handoffs, name: str) -> dict[str, Any]:
    [event] = [e for e in await handoffs.events(POLICY_CHANGED) if e["subject"] == name]
    return event
