"""Who may call what on lead-intake and metrics, for every route of both apps, and a
token's life across the three services.

handoff's matrix (roles, owners, the inbox) is in handoff/test_handoff_auth.py; both
fail when a route is added without an entry. Public routes answer the same whatever
credential comes along; signed webhooks take only a fresh, unreplayed signature with
their own integration's secret; bearer routes refuse missing, expired, forged, revoked
and never-issued tokens (401) and the wrong role (403). A token handoff issues works in
metrics once metrics has heard of it, and stops working there once handoff revokes it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from funnel_common import access, outbox
from funnel_common.auth import Role, issue_token, verify_token
from funnel_common.db import create_pool
from funnel_common.events import TokenIssued, TokenIssuedData, TokenRevokedData
from funnel_common.settings import CommonSettings
from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_common.types import utc_now
from handoff import tokens
from lead_intake.connectors import hubspot
from lead_intake.web import create_app as create_intake
from metrics.settings import MetricsSettings
from metrics.web import create_app as create_metrics
from tests.helpers import eventually
from tests.integration.access import (
    PLATFORM_PUBLIC,
    Route,
    bearer,
    expired_token,
    forged_token,
    issued_token,
    routes_of,
    unissued_token,
)
from tests.integration.handoff.test_handoff_auth import MATRIX as HANDOFF_BEARER
from tests.integration.intake.conftest import (
    BILLING_SECRET,
    CRM_SECRET,
    IMPORT_SECRET,
    intake_settings,
    running_intake,
)
from tests.metrics.support import produce, running_metrics
from tests.platform import Platform

_numbers = itertools.count()

INTAKE_PUBLIC: frozenset[Route] = PLATFORM_PUBLIC | {
    ("POST", "/v1/leads"),
    ("GET", "/v1/qualification/rules"),
}
# Signed webhooks: the secret of the integration each route belongs to.
INTAKE_SIGNED: dict[Route, str] = {
    ("POST", "/v1/deals"): CRM_SECRET,
    ("POST", "/v1/accounts/events"): BILLING_SECRET,
}
# Vendor connectors: each vendor's own credential (a signature, Salesforce's organisation
# id); a bearer token or our webhook signature is no credential there.
INTAKE_CONNECTORS: frozenset[Route] = frozenset(
    {
        ("POST", "/v1/connectors/hubspot"),
        ("POST", "/v1/connectors/salesforce"),
        ("POST", "/v1/connectors/stripe"),
    }
)
METRICS_PUBLIC: frozenset[Route] = PLATFORM_PUBLIC | {
    ("GET", "/v1/funnel"),
    ("GET", "/v1/plan"),
    ("GET", "/v1/campaigns"),
    ("GET", "/v1/campaigns.csv"),
    ("GET", "/review/static/review.css"),
    ("GET", "/review/sign-in"),
}
ROLES: tuple[Role, ...] = ("rep", "manager", "admin", "marketing")
REFUSED = ("nobody", "expired", "forged", "revoked", "unissued")
# Bearer-token routes: the roles allowed (any other role is a 403).
INTAKE_BEARER: dict[Route, tuple[Role, ...]] = {
    # A person's data: an admin's alone (docs/privacy.md).
    ("GET", "/v1/privacy/people"): ("admin",),
    ("GET", "/v1/privacy/people/{lead_id}"): ("admin",),
    ("DELETE", "/v1/privacy/people"): ("admin",),
    ("DELETE", "/v1/privacy/people/{lead_id}"): ("admin",),
}
METRICS_BEARER: dict[Route, tuple[Role, ...]] = {
    # The company-wide target: an admin's, not any team manager's.
    ("PUT", "/v1/targets/{period}"): ("admin",),
    # The weekly review pack: anyone with a token.
    ("GET", "/v1/review"): ROLES,
}
# The review page in a browser (a token pasted into /review/sign-in, kept in a cookie):
# what each credential gets, by name. "sign-in" is a redirect to the sign-in page.
REVIEW_PAGES: dict[Route, dict[str, int | str]] = {
    ("GET", "/review"): {
        **dict.fromkeys(REFUSED, "sign-in"),
        **dict.fromkeys(ROLES, 200),
    },
    # Signing in needs the form's one-time nonce: a bare post is refused, whoever sends it.
    ("POST", "/review/sign-in"): dict.fromkeys((*REFUSED, *ROLES), 403),
    ("POST", "/review/sign-out"): dict.fromkeys((*REFUSED, *ROLES), "sign-in"),
}
# Path parameters that pass validation (any other is a fresh UUID).
PATH_VALUES = {"{period}": "2026-Q4", "{rep_id}": "ada", "{team_id}": "emea", "{name}": "x"}
VENDOR_SECRET = "a-vendor-secret-for-the-access-matrix-0123"
ORGANIZATION = "00D000000000062"


async def _credentials(
    database_url: str, schema: str, settings: CommonSettings
) -> dict[str, dict[str, str]]:
    """Headers per caller, tokens as the service on ``schema`` knows them (issued, or
    issued and then revoked); a public route must answer them all alike."""
    secret = settings.auth_secret
    issued = {
        role: await issued_token(database_url, schema, secret, role=role, subject=role)
        for role in ROLES
    }
    revoked = await issued_token(database_url, schema, secret, role="admin", subject="gone")
    await _revoke_in_projection(database_url, schema, settings, revoked)
    return {
        "nobody": {},
        "expired": bearer(expired_token(secret)),
        "forged": bearer(forged_token(secret)),
        "revoked": bearer(revoked),
        "unissued": bearer(unissued_token(secret)),
        **{role: bearer(token) for role, token in issued.items()},
    }


async def _revoke_in_projection(
    database_url: str, schema: str, settings: CommonSettings, token: str
) -> None:
    """As the service's worker applies a ``funnel.token.revoked.v1``."""
    principal = verify_token(settings.auth_secret, token)
    connection = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await access.record_revoked(
            connection,
            TokenRevokedData(
                token_id=principal.token_id,
                subject=principal.subject,
                role=principal.role,
                team=principal.team,
                issued_at=principal.issued_at,
                expires_at=principal.expires_at,
                revoked_at=utc_now(),
                revoked_by="root",
            ),
        )
    finally:
        await connection.close()


async def _call(client: httpx.AsyncClient, route: Route, headers: dict[str, str]) -> int:
    method, path = route
    body: dict[str, Any] | None = None
    if path == "/v1/leads":
        body = {"email": f"matrix.{next(_numbers)}@example.org"}
    elif path == "/v1/targets/{period}":
        path, body = "/v1/targets/2026-Q4", {"amount_cents": 100_000}
    elif path == "/v1/privacy/people":
        path = f"{path}?email=matrix.{next(_numbers)}@example.org"
    elif path == "/v1/privacy/people/{lead_id}":
        email = f"matrix.{next(_numbers)}@example.org"
        lead = await client.post("/v1/leads", **_signed({"email": email}, IMPORT_SECRET))
        path = f"/v1/privacy/people/{lead.json()['lead_id']}"
    answer = await client.request(method, path, json=body, headers=headers)
    return answer.status_code


def test_every_route_of_lead_intake_and_metrics_has_an_entry(
    database_url: str, settings: CommonSettings
) -> None:
    intake = create_intake(intake_settings(database_url, settings))
    metrics = create_metrics(MetricsSettings(database_url=database_url, common=settings))

    assert routes_of(intake) == (
        INTAKE_PUBLIC | set(INTAKE_SIGNED) | INTAKE_CONNECTORS | set(INTAKE_BEARER)
    )
    assert routes_of(metrics) == METRICS_PUBLIC | set(METRICS_BEARER) | set(REVIEW_PAGES)


def _signed(body: dict[str, Any], secret: str, at: int | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    signature = sign(secret, int(time.time()) if at is None else at, raw)
    return {
        "content": raw,
        "headers": {"content-type": "application/json", SIGNATURE_HEADER: signature},
    }


def _webhook(path: str) -> dict[str, Any]:
    number = next(_numbers)
    if path == "/v1/deals":
        return {
            "webhook_id": f"w-{number}",
            "event": "opened",
            "deal_id": f"d-{number}",
            "amount_cents": 100,
        }
    return {
        "webhook_id": f"w-{number}",
        "event": "activated",
        "account_id": f"a-{number}",
        "arr_cents": 100,
    }


async def test_lead_intake_access_matrix(database_url: str, topics: CommonSettings) -> None:
    settings = intake_settings(database_url, topics)
    stale = int(time.time()) - settings.signature_tolerance_seconds - 60
    mismatches: list[tuple[object, dict[str, int]]] = []

    async with running_intake(settings) as client:
        credentials = await _credentials(database_url, "intake", topics)
        for route in sorted(INTAKE_PUBLIC):
            statuses = {name: await _call(client, route, h) for name, h in credentials.items()}
            if len(set(statuses.values())) != 1 or max(statuses.values()) >= 300:
                mismatches.append((route, statuses))

        for (_, path), secret in INTAKE_SIGNED.items():
            other = CRM_SECRET if secret == BILLING_SECRET else BILLING_SECRET
            token = credentials["admin"]
            attempts = {
                "unsigned": {"json": _webhook(path), "headers": token},
                "wrong secret": _signed(_webhook(path), secret + "-not"),
                "other integration": _signed(_webhook(path), other),
                "stale": _signed(_webhook(path), secret, at=stale),
            }
            valid = _signed(_webhook(path), secret)
            statuses = {
                name: (await client.post(path, **kwargs)).status_code
                for name, kwargs in attempts.items()
            }
            statuses["valid"] = (await client.post(path, **valid)).status_code
            statuses["replayed"] = (await client.post(path, **valid)).status_code
            expected = dict.fromkeys(attempts, 401) | {"valid": 200, "replayed": 401}
            if statuses != expected:
                mismatches.append((path, statuses))

        for route, allowed in INTAKE_BEARER.items():
            statuses = {name: await _call(client, route, h) for name, h in credentials.items()}
            ok = 204 if route[0] == "DELETE" else 200
            expected = dict.fromkeys(REFUSED, 401) | {
                role: ok if role in allowed else 403 for role in ROLES
            }
            if statuses != expected:
                mismatches.append((route, statuses))

    assert mismatches == []


def _vendor_signed(
    path: str, *, secret: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """A delivery to a connector, with the vendor's own credential (a wrong one when
    ``secret`` or ``at`` say so)."""
    sent = at or datetime.now(UTC)
    number = next(_numbers)
    if path.endswith("/hubspot"):
        body = json.dumps([{"eventId": number, "subscriptionId": 1, "portalId": 7,
                            "objectId": number, "occurredAt": int(sent.timestamp() * 1000),
                            "subscriptionType": "deal.creation"}]).encode()  # fmt: skip
        timestamp = str(int(sent.timestamp() * 1000))
        signature = hubspot.expected_signature(
            secret or VENDOR_SECRET, method="POST", uri=f"http://intake{path}", body=body,
            timestamp=timestamp,
        )  # fmt: skip
        headers = {hubspot.SIGNATURE_HEADER: signature, hubspot.TIMESTAMP_HEADER: timestamp}
        return {"content": body, "headers": {"content-type": "application/json", **headers}}
    if path.endswith("/stripe"):
        event = {"id": f"evt_{number}", "type": "customer.created",
                 "created": int(sent.timestamp()), "data": {"object": {}}}  # fmt: skip
        body = json.dumps(event).encode()
        t = int(sent.timestamp())
        digest = hmac.new((secret or VENDOR_SECRET).encode(), f"{t}.".encode() + body,
                          hashlib.sha256).hexdigest()  # fmt: skip
        return {"content": body, "headers": {"Stripe-Signature": f"t={t},v1={digest}"}}
    organization = ORGANIZATION if secret is None else "00D000000000099"
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization}</OrganizationId></notifications>"
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()
    return {"content": body, "headers": {"content-type": "text/xml"}}


async def test_lead_intake_connectors_take_only_their_vendors_credential(
    database_url: str, topics: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HUBSPOT", "SALESFORCE", "STRIPE"):
        monkeypatch.setenv(f"FUNNEL_INTAKE_{name}_ENABLED", "true")
    monkeypatch.setenv("FUNNEL_INTAKE_HUBSPOT_CLIENT_SECRET", VENDOR_SECRET)
    monkeypatch.setenv("FUNNEL_INTAKE_STRIPE_WEBHOOK_SECRET", VENDOR_SECRET)
    monkeypatch.setenv("FUNNEL_INTAKE_SALESFORCE_ORGANIZATION_ID", ORGANIZATION)
    settings = intake_settings(database_url, topics)
    # A bearer token is no credential for a vendor's delivery.
    admin = bearer(issue_token(topics.auth_secret, subject="admin", role="admin")[1])
    stale = datetime.now(UTC) - timedelta(minutes=6)
    mismatches: list[tuple[object, dict[str, int]]] = []

    async with running_intake(settings) as client:
        for _, path in sorted(INTAKE_CONNECTORS):
            valid = _vendor_signed(path)
            attempts = {
                "unsigned, with a token": {"content": valid["content"], "headers": admin},
                "our webhook signature": _signed(json.loads(valid["content"])
                                                 if path.endswith("/stripe") else {}, CRM_SECRET),
                "wrong credential": _vendor_signed(path, secret="not-the-vendors"),
            }  # fmt: skip
            if not path.endswith("/salesforce"):  # an Outbound Message carries no time
                attempts["stale"] = _vendor_signed(path, at=stale)
            statuses = {
                name: (await client.post(path, **kwargs)).status_code
                for name, kwargs in attempts.items()
            }
            statuses["valid"] = (await client.post(path, **valid)).status_code
            expected = dict.fromkeys(attempts, 401) | {"valid": 200}
            if path.endswith("/salesforce"):
                # Its one credential is the organisation id inside the message (the rest
                # is TLS and the proxy's client certificate): a token changes nothing,
                # and JSON is not an Outbound Message at all.
                expected["unsigned, with a token"] = 200
                expected["our webhook signature"] = 422
            if statuses != expected:
                mismatches.append((path, statuses))

    assert mismatches == []


async def test_metrics_access_matrix(database_url: str, topics: CommonSettings) -> None:
    settings = MetricsSettings(database_url=database_url, common=topics)
    mismatches: list[tuple[Route, Mapping[str, int | str]]] = []

    async with running_metrics(settings) as client:
        credentials = await _credentials(database_url, "metrics", topics)
        for route in sorted(METRICS_PUBLIC):
            statuses = {name: await _call(client, route, h) for name, h in credentials.items()}
            if len(set(statuses.values())) != 1 or max(statuses.values()) >= 300:
                mismatches.append((route, statuses))

        for route, allowed in METRICS_BEARER.items():
            statuses = {name: await _call(client, route, h) for name, h in credentials.items()}
            expected = dict.fromkeys(REFUSED, 401) | {
                role: 200 if role in allowed else 403 for role in ROLES
            }
            if statuses != expected:
                mismatches.append((route, statuses))

        for route, wanted in REVIEW_PAGES.items():
            seen = {name: await _review_page(client, route, h) for name, h in credentials.items()}
            if seen != wanted:
                mismatches.append((route, seen))

    assert mismatches == []


async def test_an_anonymous_malformed_body_is_401_on_every_protected_route(
    platform: Platform, topics: CommonSettings
) -> None:
    # The token is checked before the body is read (TokenFirstRoute): without one, a body
    # is neither parsed nor validated, and its errors say nothing to an outsider.
    routes = [(platform.metrics, route) for route in METRICS_BEARER] + [
        (platform.handoff, route) for route in HANDOFF_BEARER
    ]
    callers = {"nobody": {}, "forged": bearer(forged_token(topics.auth_secret))}
    malformed = {"content-type": "application/json"}
    mismatches = []

    for client, (method, template) in routes:
        path = re.sub(r"\{\w+\}", lambda found: PATH_VALUES.get(found[0], str(uuid4())), template)
        for caller, headers in callers.items():
            answer = await client.request(
                method, path, content=b'{"amount_cents": 1', headers=headers | malformed
            )
            kind = answer.headers["content-type"]
            if (answer.status_code, kind) != (401, "application/problem+json"):
                mismatches.append((method, template, caller, answer.status_code, kind))

    assert len(routes) > len(METRICS_BEARER)
    assert mismatches == []


async def _review_page(
    client: httpx.AsyncClient, route: Route, headers: dict[str, str]
) -> int | str:
    """The page as a browser with the credential in its session cookie gets it (a sign-out
    form carries the CSRF token its page shows); redirects to sign-in by name."""
    method, path = route
    token = headers.get("authorization", "").removeprefix("Bearer ")
    async with httpx.AsyncClient(
        transport=client._transport,
        base_url="https://metrics",
        cookies={"funnel_review": token} if token else None,
    ) as browser:
        data = None
        if path == "/review/sign-out":
            page = (await browser.get("/review")).text
            csrf = (
                page.split('name="csrf" value="')[1].split('"')[0] if 'name="csrf"' in page else ""
            )
            data = {"csrf": csrf}
        answer = await browser.request(method, path, data=data)
    if answer.status_code == 303 and answer.headers["location"].startswith("/review/sign-in"):
        return "sign-in"
    return answer.status_code


async def test_a_token_handoff_issues_and_revokes_reaches_metrics_and_lead_intake(
    database_url: str, platform: Platform, topics: CommonSettings
) -> None:
    handoff_pool = await create_pool(database_url, schema="handoff", max_size=2)
    try:
        async with outbox.transaction(handoff_pool) as connection:
            _, root = await tokens.create_token(
                connection, topics.auth_secret, subject="root", role="admin"
            )
    finally:
        await handoff_pool.close()
    minted = await platform.handoff.post(
        "/v1/tokens", json={"subject": "cfo", "role": "admin"}, headers=bearer(root)
    )
    assert minted.status_code == 201, minted.text
    cfo = bearer(minted.json()["token"])

    async def set_target() -> int:
        answer = await platform.metrics.put(
            "/v1/targets/2026-Q4", json={"amount_cents": 100_000}, headers=cfo
        )
        return answer.status_code

    # Heard on funnel.access: metrics takes the new token within a consumer hop.
    await eventually(set_target, until=lambda status: status == 200, what="metrics knows it")

    revoked = await platform.handoff.delete(
        f"/v1/tokens/{minted.json()['token_id']}", headers=bearer(root)
    )
    assert revoked.status_code == 200
    await eventually(set_target, until=lambda status: status == 401, what="metrics refuses it")

    async def intake_knows_it_revoked() -> bool:
        connection = await asyncpg.connect(database_url)
        try:
            revoked_at = await connection.fetchval(
                "SELECT revoked_at FROM intake.access_tokens WHERE token_id = $1",
                verify_token(topics.auth_secret, minted.json()["token"]).token_id,
            )
        finally:
            await connection.close()
        return revoked_at is not None

    # lead-intake has no bearer route today, but keeps the same projection, ready.
    await eventually(intake_knows_it_revoked, what="lead-intake's projection has it revoked")


async def test_the_tokens_metrics_heard_of_survive_a_replay(
    database_url: str, topics: CommonSettings
) -> None:
    from metrics.replay import replay

    settings = MetricsSettings(database_url=database_url, common=topics)
    principal, token = issue_token(topics.auth_secret, subject="cfo", role="admin")
    issued = TokenIssued.new(
        source="handoff",
        subject=principal.token_id,
        data=TokenIssuedData(
            token_id=principal.token_id,
            subject="cfo",
            role="admin",
            team=None,
            issued_at=principal.issued_at,
            expires_at=principal.expires_at,
            issued_by="root",
        ),
    )
    async with running_metrics(settings) as client:

        async def set_target() -> int:
            answer = await client.put(
                "/v1/targets/2026-Q4", json={"amount_cents": 100_000}, headers=bearer(token)
            )
            return answer.status_code

        await produce(topics, [issued])
        await eventually(set_target, until=lambda status: status == 200, what="metrics knows it")

        # The projection is rebuilt from funnel.access with everything else.
        result = await replay(settings)

        assert (result.switched, result.missing) == (True, 0)
        assert await set_target() == 200
