"""API tokens: handoff issues and revokes them, and announces each on ``funnel.access``.

The token text is shown once and kept nowhere: it proves itself by its signature
(funnel_common.auth). What is kept is the projection every service keeps
(funnel_common.access); handoff writes its own in the transaction that issues or
revokes, so its API takes a new token at once and refuses a revoked one at once; the
other services follow one consumer hop later.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from pydantic import SecretStr

from funnel_common import access, outbox
from funnel_common.auth import DEFAULT_TOKEN_LIFETIME, Principal, issue_token
from funnel_common.events import TokenIssued, TokenIssuedData, TokenRevoked, TokenRevokedData
from funnel_common.types import Role, utc_now
from handoff import SERVICE
from handoff.models import TokenOut


async def create_token(
    connection: asyncpg.Connection,
    secret: SecretStr,
    *,
    subject: str,
    role: Role,
    team: str | None = None,
    lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
    issued_by: str | None = None,
) -> tuple[Principal, str]:
    """A new token, recorded and announced in the caller's transaction; the caller
    shows its text once."""
    principal, token = issue_token(secret, subject=subject, role=role, team=team, lifetime=lifetime)
    data = TokenIssuedData(
        token_id=principal.token_id,
        subject=subject,
        role=role,
        team=team,
        issued_at=principal.issued_at,
        expires_at=principal.expires_at,
        issued_by=issued_by,
    )
    await access.record_issued(connection, data)
    await outbox.enqueue(
        connection,
        TokenIssued.new(source=SERVICE, subject=principal.token_id, time=data.issued_at, data=data),
    )
    return principal, token


def _token_out(row: asyncpg.Record) -> TokenOut:
    return TokenOut(
        token_id=row["token_id"],
        subject=row["subject"],
        role=row["role"],
        team=row["team"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        issued_by=row["issued_by"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


async def list_tokens(connection: asyncpg.Connection) -> list[TokenOut]:
    return [_token_out(row) for row in await access.list_tokens(connection)]


async def revoke_token(
    connection: asyncpg.Connection,
    token_id: UUID,
    *,
    revoked_by: str | None = None,
    now: datetime | None = None,
) -> TokenOut | None:
    """Revoke a token: None when it was never issued; a token already revoked stays as
    it was (and is not announced again)."""
    row = await access.find_token(connection, token_id)
    if row is None:
        return None
    if row["revoked_at"] is not None:
        return _token_out(row)
    data = TokenRevokedData(
        token_id=token_id,
        subject=row["subject"],
        role=row["role"],
        team=row["team"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        revoked_at=now or utc_now(),
        revoked_by=revoked_by,
    )
    await access.record_revoked(connection, data)
    await outbox.enqueue(
        connection,
        TokenRevoked.new(source=SERVICE, subject=token_id, time=data.revoked_at, data=data),
    )
    revoked = await access.find_token(connection, token_id)
    return None if revoked is None else _token_out(revoked)
