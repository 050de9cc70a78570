"""Hostile text in every text field handoff takes: stored exactly, or a precise 4xx.

Covers the API's roster, rules and decisions, and the rep inbox: its pages escape what
leads and reps wrote, and its forms refuse what PostgreSQL cannot store with a page,
never a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from funnel_common.events import LeadQualifiedV2
from handoff.inbox_session import MAX_FORM_FIELDS
from tests.hostile import HOSTILE, UNSTORABLE, is_problem, json_bytes
from tests.integration.handoff.support import (
    ALWAYS_HOURS,
    PERSON_KEYS,
    Handoffs,
    lead_event,
    policy_body,
)
from tests.integration.inbox.support import csrf_of, inbox_client

JSON = {"content-type": "application/json"}
REJECTED = "funnel.handoff.rejected.v2"


def _requests(value: str, handoff_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, body) for every place a client can put text."""
    # A lone surrogate goes out as its (invalid UTF-8) bytes, percent-encoded.
    path_value = quote(value.encode("utf-8", "surrogatepass"), safe="")
    rep = {"team_id": "emea", "capacity": 1}
    team = {"countries": ["DE"], "sla_policy": "emea-sla"}
    return [
        ("PUT", f"/v1/reps/{path_value}", rep),
        ("GET", f"/v1/reps/{path_value}", None),
        ("PUT", "/v1/reps/zed", {**rep, "team_id": value}),
        ("PUT", "/v1/reps/zed", {**rep, "time_zone": value}),
        ("PUT", f"/v1/teams/{path_value}", team),
        ("PUT", "/v1/teams/emea", {**team, "manager_id": value}),
        ("PUT", "/v1/teams/emea", {**team, "form_type_policies": {value: "emea-sla"}}),
        ("PUT", "/v1/teams/emea", {**team, "webhooks": [{"url": value}]}),
        ("PUT", f"/v1/sla-policies/{path_value}", policy_body(60)),
        (
            "PUT",
            "/v1/sla-policies/emea-sla",
            {**policy_body(60), "calendar": {"time_zone": value, "weekly_hours": ALWAYS_HOURS}},
        ),
        ("GET", f"/v1/handoffs?team={path_value}&status={path_value}", None),
        ("POST", f"/v1/handoffs/{path_value}/accept", None),
        ("POST", f"/v1/handoffs/{handoff_id}/reassign", {"rep_id": value}),
        ("POST", f"/v1/handoffs/{handoff_id}/reject", {"reason": value}),
    ]


async def test_every_api_text_field_takes_hostile_text_or_refuses_it(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 1000}}, countries=["DE"])
    handoff_id = str(await handoffs.qualify_directly())
    admin = {**JSON, **await handoffs.admin()}
    unexpected: list[str] = []

    for name, value in HOSTILE.items():
        for method, path, body in _requests(value, handoff_id):
            content = json_bytes(body) if body is not None else None
            answer = await handoffs.client.request(method, path, content=content, headers=admin)
            if not (answer.status_code < 300 or is_problem(answer)):
                unexpected.append(f"{name}: {method} {path[:60]} {answer.status_code}")

    assert unexpected == []


async def test_a_rejection_note_is_stored_exactly_or_refused(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 1000}}, countries=["DE"])
    admin = {**JSON, **await handoffs.admin()}

    for name, value in HOSTILE.items():
        handoff_id = await handoffs.qualify_directly()
        answer = await handoffs.client.post(
            f"/v1/handoffs/{handoff_id}/reject",
            content=json_bytes({"reason": "other", "note": value}),
            headers=admin,
        )

        if name in UNSTORABLE or len(value) > 2000:
            assert answer.status_code == 422, (name, answer.text[:300])
            assert is_problem(answer)
        else:
            assert answer.status_code == 200, (name, answer.text[:300])
            [event] = await handoffs.events(REJECTED, handoff_id)
            key = PERSON_KEYS[UUID(event["data"]["lead_id"])]
            assert key.open(event["data"]["sealed_note"], "note") == value, name


def _hostile_lead() -> LeadQualifiedV2:
    html = HOSTILE["html"]
    return lead_event(
        company=html,
        personal_data={
            "email": "ada@example.com",
            "first_name": html,
            "last_name": HOSTILE["crlf"],
            "title": html,
        },
        attribution={"source": html[:80], "campaign": HOSTILE["quotes"]},
    )


async def test_the_inbox_escapes_hostile_text_and_refuses_unstorable_notes(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 1000}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly(_hostile_lead())
    async with inbox_client(handoffs, await handoffs.token("admin", "root")) as admin:
        team = await admin.get("/inbox/team")
    async with inbox_client(handoffs, await handoffs.token("rep", "ada")) as client:
        pages = [
            team,
            await client.get("/inbox"),
            await client.get("/inbox/queue"),
            await client.get(f"/inbox/handoffs/{handoff_id}"),
        ]
        await _refuses_unstorable_notes(handoffs, client, csrf_of(pages[1]), handoff_id)

    for page in pages:
        assert page.status_code == 200
        assert "<script" not in page.text.lower().replace('<script src="/inbox/static/', "")
        assert "<img" not in page.text
        assert "&lt;script&gt;" in page.text


async def _refuses_unstorable_notes(
    handoffs: Handoffs, client: httpx.AsyncClient, csrf: str, handoff_id: UUID
) -> None:
    for note in ("nul \x00 byte", HOSTILE["long"]):
        refused = await client.post(
            f"/inbox/handoffs/{handoff_id}/reject",
            data={"csrf": csrf, "reason": "other", "note": note},
        )
        assert refused.status_code == 422, refused.text[:300]
        assert "<script" not in refused.text.lower().replace('<script src="/inbox/static/', "")
    not_utf8 = await client.post(
        f"/inbox/handoffs/{handoff_id}/reject",
        content=f"csrf={csrf}&reason=other&note=bad+%FF%FE+bytes".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 422, not_utf8.text[:300]
    assert (await handoffs.handoff(handoff_id))["status"] == "assigned"


async def test_a_form_with_too_many_fields_is_a_413_not_a_500(
    handoffs: Handoffs,
) -> None:
    client: httpx.AsyncClient = handoffs.client
    crowded = "&".join(f"field{number}=x" for number in range(MAX_FORM_FIELDS + 1))

    answers = [
        await client.post(
            "/inbox/sign-in",
            content=crowded.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        await client.post(
            "/inbox/sign-in",
            content=b"token=%FF",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    ]

    # The inbox shows the refusal on its sign-in page (HTML); the status says what it is.
    assert [answer.status_code for answer in answers] == [413, 422]
