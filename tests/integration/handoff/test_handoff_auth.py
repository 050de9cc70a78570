"""Who may do what: every endpoint x role x owner, and the token lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from funnel_cli.main import app as cli
from funnel_common.auth import issue_token, token_hash, verify_token
from handoff import tokens
from tests.integration.handoff.support import Handoffs, lead_event, policy_body

CALLERS = ("owner", "other_rep", "team_manager", "other_manager", "admin", "nobody")


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
    return {}


async def _setup(handoffs: Handoffs) -> None:
    # cyd has no capacity: never routed to, but a manager can still hand a lead over.
    await handoffs.setup_team(
        "emea", {"ada": {"capacity": 1000}, "cyd": {"capacity": 0}}, countries=["DE"]
    )
    await handoffs.setup_team("amer", {"bob": {"capacity": 1000}}, countries=["US"])


# expected status per caller, in CALLERS order
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/v1/handoffs/{id}"): (200, 403, 200, 403, 200, 401),
    ("POST", "/v1/handoffs/{id}/accept"): (200, 403, 200, 403, 200, 401),
    ("POST", "/v1/handoffs/{id}/reject"): (200, 403, 200, 403, 200, 401),
    ("POST", "/v1/handoffs/{id}/reassign"): (403, 403, 200, 403, 200, 401),
    ("PUT", "/v1/reps/ada"): (403, 403, 200, 403, 200, 401),
    ("PUT", "/v1/teams/emea"): (403, 403, 403, 403, 200, 401),
    ("PUT", "/v1/sla-policies/emea-sla"): (403, 403, 403, 403, 200, 401),
    ("GET", "/v1/handoffs"): (200, 200, 200, 200, 200, 401),
    ("GET", "/v1/reps"): (403, 403, 200, 200, 200, 401),
    ("GET", "/v1/teams"): (403, 403, 200, 200, 200, 401),
    ("GET", "/v1/sla-policies"): (200, 200, 200, 200, 200, 401),
    ("GET", "/v1/me"): (200, 200, 200, 200, 200, 401),
}

BODIES: dict[str, dict[str, Any]] = {
    "/v1/handoffs/{id}/reject": {"reason": "not_a_fit"},
    "/v1/handoffs/{id}/reassign": {"rep_id": "cyd"},
    "/v1/reps/ada": {"team_id": "emea", "capacity": 1000},
    "/v1/teams/emea": {"manager_id": "emea-manager", "countries": ["DE"], "sla_policy": "emea-sla"},
    "/v1/sla-policies/emea-sla": policy_body(60),
}


async def test_authorization_matrix(handoffs: Handoffs) -> None:
    await _setup(handoffs)
    mismatches = []

    for (method, template), expected in MATRIX.items():
        for caller, status in zip(CALLERS, expected, strict=True):
            # A fresh handoff for every cell: a successful decision ends it.
            handoff_id = await handoffs.qualify_directly() if "{id}" in template else None
            path = template.replace("{id}", str(handoff_id))
            answer = await handoffs.client.request(
                method, path, json=BODIES.get(template), headers=await _headers(handoffs, caller)
            )
            if answer.status_code != status:
                mismatches.append((method, template, caller, status, answer.status_code))
            if answer.status_code in (401, 403):
                assert answer.headers["content-type"] == "application/problem+json"

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


async def test_tokens_that_are_forged_foreign_or_revoked_get_401(handoffs: Handoffs) -> None:
    valid = await handoffs.token("rep", "ada")
    _, foreign = issue_token(SecretStr("another-secret"), subject="ada", role="rep")
    _, unrecorded = issue_token(handoffs.settings.common.auth_secret, subject="ada", role="admin")

    async def status(token: str | None) -> tuple[int, str]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        answer = await handoffs.client.get("/v1/handoffs", headers=headers)
        return answer.status_code, answer.json().get("detail", "")

    assert await status(valid) == (200, "")
    assert await status(None) == (401, "missing bearer token")
    assert await status("fnl_garbage") == (401, "malformed token")
    assert await status(foreign) == (401, "bad token signature")
    assert await status(unrecorded) == (401, "token revoked")

    async with handoffs.pool.acquire() as connection:
        principal = verify_token(handoffs.settings.common.auth_secret, valid)
        assert await tokens.revoke_token(connection, principal.token_id)

    assert await status(valid) == (401, "token revoked")


def test_funnel_token_create_prints_once_stores_a_hash_and_revokes(
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

    assert created.exit_code == 0, created.output
    assert refused.exit_code != 0
    assert bad_role.exit_code != 0
    token = created.output.strip()
    principal = verify_token(SecretStr("test-secret-for-cli"), token)
    assert (principal.subject, principal.role, principal.team) == ("mia", "manager", "emea")

    async def stored() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await connection.fetch("SELECT * FROM handoff.api_tokens")
            return rows
        finally:
            await connection.close()

    [row] = asyncio.run(stored())
    assert row["token_hash"] == token_hash(token)
    assert token not in {str(value) for value in dict(row).values()}

    listed = runner.invoke(cli, ["token", "list"])
    revoked = runner.invoke(cli, ["token", "revoke", str(principal.token_id)])
    again = runner.invoke(cli, ["token", "revoke", str(principal.token_id)])

    assert str(principal.token_id) in listed.output
    assert token not in listed.output
    assert revoked.exit_code == 0
    assert again.exit_code == 1
    [row] = asyncio.run(stored())
    assert row["revoked_at"] is not None
