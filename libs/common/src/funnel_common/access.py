"""The projection of API tokens that every service keeps (table ``access_tokens``).

handoff issues and revokes tokens and says so on ``funnel.access``
(``funnel.token.issued.v1``, ``funnel.token.revoked.v1``); each service applies those
events here with :data:`ACCESS_HANDLERS`, and :func:`funnel_common.auth.verify_access`
reads the table. The issuer writes its own projection in the transaction that issues or
revokes, so it never waits for its own event; the other services see a change one
consumer hop later (typically well under a second, longer while the broker is down).

Applying is order-independent: a revocation carries the whole token, so a service that
hears of it first (or only) still refuses the token, and a late issue never un-revokes.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from funnel_common.events import (
    ACCESS_TOPIC,
    TokenIssued,
    TokenIssuedData,
    TokenRevoked,
    TokenRevokedData,
)
from funnel_common.service import ConsumerSpec, handles


async def record_issued(connection: asyncpg.Connection, data: TokenIssuedData) -> None:
    """Remember an issued token (a repeat changes nothing; a revocation stays)."""
    await connection.execute(
        """INSERT INTO access_tokens (token_id, subject, role, team, issued_at, expires_at,
                                      issued_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (token_id) DO NOTHING""",
        data.token_id,
        data.subject,
        data.role,
        data.team,
        data.issued_at,
        data.expires_at,
        data.issued_by,
    )


async def record_revoked(connection: asyncpg.Connection, data: TokenRevokedData) -> None:
    """Remember a revocation; the first one recorded is the one that counts."""
    await connection.execute(
        """INSERT INTO access_tokens (token_id, subject, role, team, issued_at, expires_at,
                                      revoked_at, revoked_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (token_id) DO UPDATE SET
               revoked_at = coalesce(access_tokens.revoked_at, EXCLUDED.revoked_at),
               revoked_by = coalesce(access_tokens.revoked_by, EXCLUDED.revoked_by)""",
        data.token_id,
        data.subject,
        data.role,
        data.team,
        data.issued_at,
        data.expires_at,
        data.revoked_at,
        data.revoked_by,
    )


async def find_token(connection: asyncpg.Connection, token_id: UUID) -> asyncpg.Record | None:
    """The projection's row of a token id, or None when it was never issued."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT * FROM access_tokens WHERE token_id = $1", token_id
    )
    return row


async def list_tokens(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every token the projection knows, oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT * FROM access_tokens ORDER BY issued_at, token_id"
    )
    return rows


async def on_token_issued(connection: asyncpg.Connection, event: TokenIssued) -> None:
    await record_issued(connection, event.data)


async def on_token_revoked(connection: asyncpg.Connection, event: TokenRevoked) -> None:
    await record_revoked(connection, event.data)


ACCESS_HANDLERS = dict(
    [
        handles(TokenIssued, on_token_issued),
        handles(TokenRevoked, on_token_revoked),
    ]
)


def access_only(group_id: str) -> ConsumerSpec:
    """The consumer of a service that consumes nothing else."""
    return ConsumerSpec(group_id=group_id, topics=[ACCESS_TOPIC], handlers=ACCESS_HANDLERS)
