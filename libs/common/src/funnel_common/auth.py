"""Bearer tokens with roles, verifiable by every service without a shared table.

A token is ``fnl_<claims>.<signature>``: base64url JSON claims (token id, subject,
role, team, issue and expiry times) and an HMAC-SHA256 over them with the platform's
``FUNNEL_AUTH_SECRET``. Any service can check a token; the service that issues them
(handoff, through ``funnel token create``) stores only a SHA-256 hash of each, so it
can list and revoke tokens without ever holding one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from funnel_common.http import DomainError
from funnel_common.types import UtcDatetime, utc_now

Role = Literal["rep", "manager", "admin"]
ROLES: tuple[Role, ...] = ("rep", "manager", "admin")
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


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer`` header (or the inbox's session cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise Unauthenticated("missing bearer token", headers={"WWW-Authenticate": "Bearer"})


def authenticator(
    secret_of: Callable[[Request], SecretStr],
    *,
    revoked: Callable[[Request, Principal], Awaitable[bool]] | None = None,
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency that yields the caller's :class:`Principal` or answers 401.

    ``revoked`` lets the issuing service also check its token table.
    """

    async def principal(request: Request) -> Principal:
        token = bearer_token(request)
        found = verify_token(secret_of(request), token)
        if revoked is not None and await revoked(request, found):
            raise Unauthenticated("token revoked")
        return found

    return principal


def require_role(
    authenticate: Callable[[Request], Awaitable[Principal]], *roles: Role
) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only ``roles`` through (403 for the others)."""

    # Depends() sits in the default, not in the annotation: this module's annotations
    # are strings (PEP 563), and FastAPI cannot resolve a local name inside one.
    async def allowed(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return principal

    return allowed
