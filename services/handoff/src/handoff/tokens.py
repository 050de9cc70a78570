"""API tokens issued by handoff: signed (funnel_common.auth), stored only as a hash."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg
from pydantic import SecretStr

from funnel_common.auth import DEFAULT_TOKEN_LIFETIME, Principal, Role, issue_token, token_hash
from handoff import store
from handoff.models import TokenOut

__all__ = ["TokenOut", "create_token", "list_tokens", "revoke_token"]


async def create_token(
    connection: asyncpg.Connection,
    secret: SecretStr,
    *,
    subject: str,
    role: Role,
    team: str | None = None,
    lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
) -> tuple[Principal, str]:
    """A new token; the caller shows its text once, only the hash is kept."""
    principal, token = issue_token(secret, subject=subject, role=role, team=team, lifetime=lifetime)
    await store.insert_token(
        connection,
        token_id=principal.token_id,
        token_hash=token_hash(token),
        subject=subject,
        role=role,
        team_id=team,
        issued_at=principal.issued_at,
        expires_at=principal.expires_at,
    )
    return principal, token


async def list_tokens(connection: asyncpg.Connection) -> list[TokenOut]:
    return await store.list_tokens(connection)


async def revoke_token(connection: asyncpg.Connection, token_id: UUID) -> bool:
    return await store.revoke_token(connection, token_id)
