"""Who may do what: every route x role x owner x bad credential, and the token lifecycle
(minted, listed and revoked over HTTP; `funnel token` as the local bootstrap)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from funnel_cli.main import app as cli
from funnel_common import outbox
from funnel_common.auth import issue_token, verify_token
from handoff import tokens
from handoff.settings import HandoffSettings
from handoff.web import create_app
from tests.integration.access import (
    PLATFORM_PUBLIC,
    Route,
    bearer,
    expired_token,
    forged_token,
    routes_of,
    unissued_token,
)
from tests.integration.handoff.support import Handoffs, lead_event, policy_body
from tests.integration.inbox.test_inbox_session import csrf_of

CALLERS = ("owner", "other_rep", "team_manager", "other_manager", "admin", "marketing", "nobody")
# Credentials that never get past authentication, whatever the route: a revoked admin
# token, and an admin token signed with the platform's secret but never issued.
REFUSED = ("expired", "forged", "revoked", "unissued")


async def _headers(handoffs: Handoffs, caller: str) -> dict[str, str]:
    match caller:
        case "owner":
            return await handoffs.auth("rep", "ada")
        case "other_rep":
            return await handoffs.auth("rep", "bob")
        case "team_manager":
            return await handoffs.auth("manager", "emea-manager", "emea")
        case "other_manager":
            return await handoffs.auth("manager", "amer-manager", "amer")
        case "admin":
            return await handoffs.auth("admin", "root")
        case "marketing":
            # Named like the owner on purpose: a marketing token is still nobody's rep.
            return await handoffs.auth("marketing", "ada")
        case "expired":
            return bearer(expired_token(handoffs.settings.common.auth_secret))
        case "forged":
            return bearer(forged_token(handoffs.settings.common.auth_secret))
        case "revoked":
            return bearer(await _revoked_admin(handoffs))
        case "unissued":
            return bearer(unissued_token(handoffs.settings.common.auth_secret))
    return {}


async def _revoked_admin(handoffs: Handoffs) -> str:
    token = await handoffs.token("admin", "revoked-root")
    async with outbox.transaction(handoffs.pool) as connection:
        principal = verify_token(handoffs.settings.common.auth_secret, token)
        await tokens.revoke_token(connection, principal.token_id)
    return token


async def _setup(handoffs: Handoffs) -> None:
    # cyd has no capacity: never routed to, but a manager can still hand a lead over.
    await handoffs.setup_team(
        "emea", {"ada": {"capacity": 1000}, "cyd": {"capacity": 0}}, countries=["DE"]
    )
    await handoffs.setup_team("amer", {"bob": {"capacity": 1000}}, countries=["US"])


# Every bearer-token route, by its template: the expected status per caller, in CALLERS
# order ("owner" is ada, the rep the handoff is assigned to, and the rep in the path).
MATRIX: dict[Route, tuple[int, ...]] = {
    ("GET", "/v1/handoffs/{handoff_id}"): (200, 403, 200, 403, 200, 200, 401),
    ("POST", "/v1/handoffs/{handoff_id}/accept"): (200, 403, 200, 403, 200, 403, 401),
    ("POST", "/v1/handoffs/{handoff_id}/reject"): (200, 403, 200, 403, 200, 403, 401),
    ("POST", "/v1/handoffs/{handoff_id}/reassign"): (403, 403, 200, 403, 200, 403, 401),
    ("PUT", "/v1/reps/{rep_id}"): (403, 403, 200, 403, 200, 403, 401),
    ("GET", "/v1/reps/{rep_id}"): (200, 403, 200, 403, 200, 403, 401),
    ("PUT", "/v1/teams/{team_id}"): (403, 403, 403, 403, 200, 403, 401),
    ("PUT", "/v1/sla-policies/{name}"): (403, 403, 403, 403, 200, 403, 401),
    ("GET", "/v1/handoffs"): (200, 200, 200, 200, 200, 200, 401),
    ("GET", "/v1/reps"): (403, 403, 200, 200, 200, 403, 401),
    ("GET", "/v1/teams"): (403, 403, 200, 200, 200, 403, 401),
    ("GET", "/v1/sla-policies"): (200, 200, 200, 200, 200, 200, 401),
    ("GET", "/v1/me"): (200, 200, 200, 200, 200, 200, 401),
    ("POST", "/v1/tokens"): (403, 403, 403, 403, 201, 403, 401),
    ("GET", "/v1/tokens"): (403, 403, 403, 403, 200, 403, 401),
    ("DELETE", "/v1/tokens/{token_id}"): (403, 403, 403, 403, 200, 403, 401),
    # Sales' feedback on marketing's leads: marketing, managers (their team), admins.
    ("GET", "/v1/feedback"): (403, 403, 200, 200, 200, 200, 401),
    ("GET", "/v1/feedback.csv"): (403, 403, 200, 200, 200, 200, 401),
    # A person's data: an admin's alone (docs/privacy.md).
    ("GET", "/v1/privacy/people/{lead_id}"): (403, 403, 403, 403, 200, 403, 401),
}
PATH_VALUES = {
    "{rep_id}": "ada",
    "{team_id}": "emea",
    "{name}": "emea-sla",
    "{lead_id}": "6f1c2a8e-3b7d-4e0a-9c55-0d2b8f4a7e61",
}

BODIES: dict[str, dict[str, Any]] = {
    "/v1/handoffs/{handoff_id}/reject": {"reason": "not_a_fit"},
    "/v1/handoffs/{handoff_id}/reassign": {"rep_id": "cyd"},
    "/v1/reps/{rep_id}": {"team_id": "emea", "capacity": 1000},
    "/v1/teams/{team_id}": {
        "manager_id": "emea-manager",
        "countries": ["DE"],
        "sla_policy": "emea-sla",
    },
    "/v1/sla-policies/{name}": policy_body(60),
    "/v1/tokens": {"subject": "eve", "role": "rep"},
}

# The rep inbox (session cookie, not in the OpenAPI): what each caller gets, in
# CALLERS + REFUSED order. "sign-in" is a redirect to the sign-in page, "feedback" one to
# the feedback page (marketing holds no queue), "done" the redirect after a decision.
SIGNED_OUT = len(REFUSED) + 1  # nobody, then the refused credentials
SIGNED_IN = len(CALLERS) - 1
INBOX: dict[Route, tuple[int | str, ...]] = {
    ("GET", "/inbox"): (200, 200, 200, 200, 200, "feedback", *["sign-in"] * SIGNED_OUT),
    ("GET", "/inbox/queue"): (200, 200, 200, 200, 200, 403, *[401] * SIGNED_OUT),
    ("GET", "/inbox/handoffs/{handoff_id}"): (
        *(200, 403, 200, 403, 200, 200),
        *["sign-in"] * SIGNED_OUT,
    ),
    ("POST", "/inbox/handoffs/{handoff_id}/{action}"): (
        *("done", 403, "done", 403, "done", 403),
        *["sign-in"] * SIGNED_OUT,
    ),
    ("POST", "/inbox/sign-out"): ("sign-in",) * (SIGNED_IN + SIGNED_OUT),
    ("GET", "/inbox/accepted"): (200, 200, 200, 200, 200, "feedback", *["sign-in"] * SIGNED_OUT),
    ("GET", "/inbox/history"): (200, 200, 200, 200, 200, "feedback", *["sign-in"] * SIGNED_OUT),
    ("GET", "/inbox/team"): (403, 403, 200, 200, 200, 403, *["sign-in"] * SIGNED_OUT),
    ("GET", "/inbox/team/rows"): (403, 403, 200, 200, 200, 403, *[401] * SIGNED_OUT),
    ("POST", "/inbox/team/reassign"): (
        *(403, 403, "done", 403, "done", 403),
        *["sign-in"] * SIGNED_OUT,
    ),
    ("GET", "/inbox/feedback"): (403, 403, 200, 200, 200, 200, *["sign-in"] * SIGNED_OUT),
    ("GET", "/inbox/feedback.csv"): (403, 403, 200, 200, 200, 200, *["sign-in"] * SIGNED_OUT),
}
# Open to anyone: the probes and docs, and what a browser needs before signing in.
PUBLIC: frozenset[Route] = PLATFORM_PUBLIC | {
    ("GET", "/inbox/static/{name}"),
    ("GET", "/inbox/sign-in"),
    ("POST", "/inbox/sign-in"),
}


def test_every_route_has_an_entry_in_the_access_matrix(database_url: str) -> None:
    app = create_app(HandoffSettings(database_url=database_url))

    assert routes_of(app) == set(MATRIX) | set(INBOX) | PUBLIC


async def test_authorization_matrix(handoffs: Handoffs) -> None:
    await _setup(handoffs)
    mismatches: list[tuple[str, str, str, int, int]] = []

    for (method, template), expected in MATRIX.items():
        for caller, status in zip(
            CALLERS + REFUSED, (*expected, *[401] * len(REFUSED)), strict=True
        ):
            # A fresh handoff (and token to revoke) for every cell: a success ends it.
            path = template
            if "{handoff_id}" in template:
                path = path.replace("{handoff_id}", str(await handoffs.qualify_directly()))
            if "{token_id}" in template:
                victim = await handoffs.token("rep", f"victim-{len(mismatches)}-{caller}")
                token_id = verify_token(handoffs.settings.common.auth_secret, victim).token_id
                path = path.replace("{token_id}", str(token_id))
            for placeholder, value in PATH_VALUES.items():
                path = path.replace(placeholder, value)
            answer = await handoffs.client.request(
                method, path, json=BODIES.get(template), headers=await _headers(handoffs, caller)
            )
            if answer.status_code != status:
                mismatches.append((method, template, caller, status, answer.status_code))
            if answer.status_code in (401, 403):
                assert answer.headers["content-type"] == "application/problem+json"

    assert mismatches == []


def _outcome(answer: httpx.Response) -> int | str:
    if answer.status_code != 303:
        return answer.status_code
    location = answer.headers["location"]
    if location.startswith("/inbox/sign-in"):
        return "sign-in"
    return "feedback" if location == "/inbox/feedback" else "done"


async def test_inbox_access_matrix(handoffs: Handoffs) -> None:
    await _setup(handoffs)
    mismatches = []

    for (method, template), expected in INBOX.items():
        for caller, want in zip(CALLERS + REFUSED, expected, strict=True):
            token = (await _headers(handoffs, caller)).get("authorization", "")[len("Bearer ") :]
            async with httpx.AsyncClient(
                transport=handoffs.client._transport,
                base_url="http://handoff",
                cookies={"funnel_inbox": token} if token else None,
            ) as client:
                handoff_id = str(await handoffs.qualify_directly())
                data = {}
                if method == "POST" and caller not in ("nobody", *REFUSED):
                    home = "/inbox/feedback" if caller == "marketing" else "/inbox"
                    data["csrf"] = csrf_of(await client.get(home))
                    # What the team's bulk reassign reads (the other forms ignore it).
                    data.update(handoff_id=handoff_id, rep_id="cyd")
                path = template.replace("{action}", "accept").replace("{handoff_id}", handoff_id)
                answer = await client.request(method, path, data=data or None)
            if _outcome(answer) != want:
                mismatches.append((method, template, caller, want, _outcome(answer)))

    assert mismatches == []


async def test_queues_show_only_what_the_caller_may_see(handoffs: Handoffs) -> None:
    await _setup(handoffs)
    emea = await handoffs.qualify_directly()
    amer = await handoffs.qualify_directly(lead_event(country="US"))

    async def queue(caller: str) -> set[str]:
        answer = await handoffs.client.get("/v1/handoffs", headers=await _headers(handoffs, caller))
        return {item["handoff_id"] for item in answer.json()["items"]}

    assert await queue("owner") == {str(emea)}
    assert await queue("other_rep") == {str(amer)}
    assert await queue("team_manager") == {str(emea)}
    assert await queue("admin") == {str(emea), str(amer)}
    assert await queue("marketing") == {str(emea), str(amer)}  # reads all, acts on none


async def test_tokens_that_are_forged_foreign_unissued_or_revoked_get_401(
    handoffs: Handoffs,
) -> None:
    valid = await handoffs.token("rep", "ada")
    _, foreign = issue_token(SecretStr("another-secret"), subject="ada", role="rep")
    _, unissued = issue_token(handoffs.settings.common.auth_secret, subject="ada", role="admin")

    async def status(token: str | None) -> tuple[int, str]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        answer = await handoffs.client.get("/v1/handoffs", headers=headers)
        return answer.status_code, answer.json().get("detail", "")

    assert await status(valid) == (200, "")
    assert await status(None) == (401, "missing bearer token")
    assert await status("fnl_garbage") == (401, "malformed token")
    assert await status(foreign) == (401, "bad token signature")
    assert await status(unissued) == (401, "token not issued")

    async with outbox.transaction(handoffs.pool) as connection:
        principal = verify_token(handoffs.settings.common.auth_secret, valid)
        assert await tokens.revoke_token(connection, principal.token_id)

    assert await status(valid) == (401, "token revoked")


async def test_an_admin_mints_lists_and_revokes_tokens_over_http(handoffs: Handoffs) -> None:
    admin = await handoffs.admin()

    minted = await handoffs.client.post(
        "/v1/tokens", json={"subject": "mia", "role": "manager", "team": "emea"}, headers=admin
    )
    no_team = await handoffs.client.post(
        "/v1/tokens", json={"subject": "mia", "role": "manager"}, headers=admin
    )

    assert minted.status_code == 201, minted.text
    assert no_team.status_code == 422
    assert [error["field"] for error in no_team.json()["errors"]] == ["team"]
    created = minted.json()
    mia = {"authorization": f"Bearer {created['token']}"}
    me = await handoffs.client.get("/v1/me", headers=mia)
    assert me.status_code == 200  # usable at once in handoff
    assert (me.json()["subject"], me.json()["role"], me.json()["team"]) == (
        "mia",
        "manager",
        "emea",
    )

    listed = await handoffs.client.get("/v1/tokens", headers=admin)
    assert listed.status_code == 200
    [entry] = [token for token in listed.json() if token["token_id"] == created["token_id"]]
    assert entry["issued_by"] == "root"
    assert created["token"] not in listed.text  # the text is shown once, kept nowhere

    revoked = await handoffs.client.delete(f"/v1/tokens/{created['token_id']}", headers=admin)
    again = await handoffs.client.delete(f"/v1/tokens/{created['token_id']}", headers=admin)
    unknown = await handoffs.client.delete(f"/v1/tokens/{uuid4()}", headers=admin)

    assert revoked.status_code == 200
    assert (revoked.json()["revoked_by"], again.json()["revoked_at"]) == (
        "root",
        revoked.json()["revoked_at"],
    )
    assert unknown.status_code == 404
    assert (await handoffs.client.get("/v1/me", headers=mia)).status_code == 401
    # Announced for the other services, once each: issued, then revoked.
    assert [e["data"]["token_id"] for e in await handoffs.events("funnel.token.issued.v1")][
        -1
    ] == created["token_id"]
    assert [e["data"]["token_id"] for e in await handoffs.events("funnel.token.revoked.v1")] == [
        created["token_id"]
    ]


def test_funnel_token_create_is_the_bootstrap_prints_once_and_stores_no_token(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNEL_HANDOFF_DATABASE_URL", database_url)
    monkeypatch.setenv("FUNNEL_AUTH_SECRET", "test-secret-for-cli")
    runner = CliRunner()

    created = runner.invoke(
        cli, ["token", "create", "--role", "manager", "--subject", "mia", "--team", "emea"]
    )
    refused = runner.invoke(cli, ["token", "create", "--role", "manager", "--subject", "mia"])
    bad_role = runner.invoke(cli, ["token", "create", "--role", "boss", "--subject", "mia"])
    bad_subject = runner.invoke(cli, ["token", "create", "--role", "rep", "--subject", "a b"])

    assert created.exit_code == 0, created.output
    assert refused.exit_code != 0
    assert "--team" in refused.output
    assert bad_role.exit_code != 0
    assert bad_subject.exit_code != 0
    token = created.output.strip()
    principal = verify_token(SecretStr("test-secret-for-cli"), token)
    assert (principal.subject, principal.role, principal.team) == ("mia", "manager", "emea")

    async def stored() -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        connection = await asyncpg.connect(database_url)
        try:
            tokens = await connection.fetch("SELECT * FROM handoff.access_tokens")
            announced = await connection.fetch(
                "SELECT event_type, payload FROM handoff.outbox WHERE topic = 'funnel.access'"
            )
            return tokens, announced
        finally:
            await connection.close()

    [row], [event] = asyncio.run(stored())
    assert row["token_id"] == principal.token_id
    assert token not in {str(value) for value in dict(row).values()}
    assert event["event_type"] == "funnel.token.issued.v1"
    assert token.encode() not in event["payload"]

    listed = runner.invoke(cli, ["token", "list"])
    revoked = runner.invoke(cli, ["token", "revoke", str(principal.token_id)])
    unknown = runner.invoke(cli, ["token", "revoke", str(uuid4())])

    assert str(principal.token_id) in listed.output
    assert token not in listed.output
    assert revoked.exit_code == 0
    assert unknown.exit_code == 1
    [row], announced = asyncio.run(stored())
    assert row["revoked_at"] is not None
    assert [event["event_type"] for event in announced] == [
        "funnel.token.issued.v1",
        "funnel.token.revoked.v1",
    ]
