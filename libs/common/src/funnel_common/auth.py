"""Bearer tokens with roles, and the one verifier every service uses.

A token is ``fnl_<claims>.<signature>``: base64url JSON claims (token id, subject,
role, team, issue and expiry times) and an HMAC-SHA256 over them with the platform's
``FUNNEL_AUTH_SECRET``. handoff issues and revokes tokens (``/v1/tokens``, or
``funnel token`` for the first one) and announces each on ``funnel.access``; every
service keeps the projection (:mod:`funnel_common.access`), so :func:`verify_access`
checks the same four things everywhere: the signature, the expiry, that the token was
issued, and that it is not revoked. No service keeps a token's text or hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from funnel_common import access
from funnel_common.http import DomainError
from funnel_common.service import runtime_of
from funnel_common.settings import Environment
from funnel_common.types import Role as Role  # re-exported: the roles live with the tokens
from funnel_common.types import UtcDatetime, utc_now

ROLES: tuple[Role, ...] = ("rep", "manager", "admin", "marketing")
TOKEN_PREFIX = "fnl_"
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)


class Principal(BaseModel):
    """Who a valid token speaks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_id: UUID
    subject: str
    role: Role
    team: str | None = None
    issued_at: UtcDatetime
    expires_at: UtcDatetime


class Unauthenticated(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "A valid bearer token is required"


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "This token may not do that"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: SecretStr, claims: str) -> str:
    digest = hmac.new(secret.get_secret_value().encode(), claims.encode(), hashlib.sha256)
    return _b64(digest.digest())


def issue_token(
    secret: SecretStr,
    *,
    subject: str,
    role: Role,
    team: str | None = None,
    now: datetime | None = None,
    lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
) -> tuple[Principal, str]:
    """A new token for ``subject``; returns its principal and the token text."""
    issued_at = now or utc_now()
    principal = Principal(
        token_id=uuid4(),
        subject=subject,
        role=role,
        team=team,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
    )
    claims = _b64(principal.model_dump_json().encode())
    return principal, f"{TOKEN_PREFIX}{claims}.{_sign(secret, claims)}"


def verify_token(secret: SecretStr, token: str, *, now: datetime | None = None) -> Principal:
    """The principal of a well-signed, unexpired token; :class:`Unauthenticated` otherwise."""
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 1:
        raise Unauthenticated("malformed token")
    claims, signature = token.removeprefix(TOKEN_PREFIX).split(".")
    if not hmac.compare_digest(_sign(secret, claims), signature):
        raise Unauthenticated("bad token signature")
    try:
        principal = Principal.model_validate_json(_unb64(claims))
    except (ValidationError, ValueError, json.JSONDecodeError) as error:
        raise Unauthenticated("malformed token") from error
    if principal.expires_at <= (now or utc_now()):
        raise Unauthenticated("token expired")
    return principal


async def verify_access(
    connection: asyncpg.Connection, secret: SecretStr, token: str, *, now: datetime | None = None
) -> Principal:
    """The one check of a token, in every service: well signed, unexpired, issued (its id
    is in the ``access_tokens`` projection with the same claims) and not revoked.

    :class:`Unauthenticated` otherwise. A token signed with the secret but never issued
    (a leaked secret, a hand-made token) is refused like a forged one.
    """
    principal = verify_token(secret, token, now=now)
    issued = await access.find_token(connection, principal.token_id)
    if issued is None or (issued["subject"], issued["role"], issued["team"]) != (
        principal.subject,
        principal.role,
        principal.team,
    ):
        raise Unauthenticated("token not issued")
    if issued["revoked_at"] is not None:
        raise Unauthenticated("token revoked")
    return principal


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer`` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise Unauthenticated("missing bearer token", headers={"WWW-Authenticate": "Bearer"})


_VERIFIED = "funnel.verified_principal"


async def authenticate(request: Request) -> Principal:
    """A FastAPI dependency: the caller's :class:`Principal` (:func:`verify_access` with
    the service's secret and projection), or a 401."""
    # Verified by TokenFirstRoute for this request. In the scope, not in request.state:
    # the lifespan's state may be one dict shared by every request (asgi-lifespan).
    verified = request.scope.get(_VERIFIED)
    if isinstance(verified, Principal):
        return verified
    token = bearer_token(request)  # no header: refused without a database round trip
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as connection:
        return await verify_access(connection, runtime.settings.auth_secret, token)


def _needs_token(dependant: Dependant) -> bool:
    return any(
        dependency.call is authenticate or _needs_token(dependency)
        for dependency in dependant.dependencies
    )


class TokenFirstRoute(APIRoute):
    """A route that authenticates before its body is read, where it needs a token.

    FastAPI reads and parses a route's body before it runs the route's dependencies, so
    an anonymous caller's malformed JSON got a 422 and its well-formed body was parsed,
    all before ``authenticate`` refused it. A route whose dependencies include
    :func:`authenticate` (directly or through :func:`require_role`) runs it first: no
    token, no body read (a 401 whatever the body). Set as an ``APIRouter``'s
    ``route_class``; the access matrix's malformed-body test finds a router without it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _needs_token(self.dependant):
            return handler

        async def authenticated_first(request: Request) -> Response:
            request.scope[_VERIFIED] = await authenticate(request)
            return await handler(request)

        return authenticated_first


def session_cookie_secure(request: Request, environment: Environment) -> bool:
    """Whether a session cookie must be marked ``Secure``: over https, and in every
    environment but development.

    Development serves plain http on a laptop, where a browser would never send a Secure
    cookie back. Behind a TLS-terminating ingress the request itself says http, so
    outside development the cookie is Secure regardless of the scheme it arrived on
    (trusting ``X-Forwarded-Proto`` instead would need the list of trusted proxies).
    """
    return request.url.scheme == "https" or environment != "development"


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only authenticated callers with ``roles`` through (401 for
    no valid token, 403 for another role)."""

    # Depends() sits in the default, not in the annotation: this module's annotations
    # are strings (PEP 563), and FastAPI cannot resolve a local name inside one.
    async def allowed(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return principal

    return allowed
