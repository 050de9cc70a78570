"""Who may call what: the route table of an app, and credentials that must be refused.

An access matrix lists every route of an app with the access it expects; comparing it
with :func:`routes_of` makes a new route without an entry fail its service's matrix.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr

from funnel_common import access
from funnel_common.auth import Role, issue_token
from funnel_common.events import TokenIssuedData
from funnel_common.types import utc_now

Route = tuple[str, str]
"""(method, path template), e.g. ("PUT", "/v1/reps/{rep_id}")."""

# FastAPI's own documentation pages and the probes every service serves to anyone.
PLATFORM_PUBLIC: frozenset[Route] = frozenset(
    {
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
)


def routes_of(app: FastAPI) -> set[Route]:
    """Every (method, path) the app routes, including those left out of its OpenAPI."""
    found: set[Route] = set()
    # Included routers are resolved lazily since FastAPI 0.16x; this walks them too.
    for route in iter_route_contexts(app.routes):
        # Starlette adds HEAD to every GET route; it is the GET.
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}:
            found.add((method, route.path or ""))
    return found


def expired_token(secret: SecretStr, role: Role = "admin", team: str | None = None) -> str:
    """A correctly signed admin token whose lifetime ended a minute ago."""
    _, token = issue_token(
        secret,
        subject="root",
        role=role,
        team=team,
        now=utc_now() - timedelta(days=1),
        lifetime=timedelta(days=1, minutes=-1),
    )
    return token


def forged_token(secret: SecretStr) -> str:
    """An admin token signed with a secret other than the platform's."""
    _, token = issue_token(
        SecretStr(secret.get_secret_value() + "-not"), subject="root", role="admin"
    )
    return token


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def unissued_token(secret: SecretStr, role: Role = "admin", team: str | None = None) -> str:
    """Signed with the platform's own secret, but never issued (nowhere recorded): what a
    leaked secret would let someone make."""
    _, token = issue_token(secret, subject="root", role=role, team=team)
    return token


async def issued_token(
    database_url: str,
    schema: str,
    secret: SecretStr,
    *,
    role: Role,
    subject: str | None = None,
    team: str | None = None,
) -> str:
    """A token as handoff issues one, already in the token projection of the service on
    ``schema`` (as after its worker applied the ``funnel.token.issued.v1`` event). The
    service must have started once (its schema migrated)."""
    principal, token = issue_token(secret, subject=subject or f"{role}-1", role=role, team=team)
    connection = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await access.record_issued(
            connection,
            TokenIssuedData(
                token_id=principal.token_id,
                subject=principal.subject,
                role=role,
                team=team,
                issued_at=principal.issued_at,
                expires_at=principal.expires_at,
                issued_by=None,
            ),
        )
    finally:
        await connection.close()
    return token
