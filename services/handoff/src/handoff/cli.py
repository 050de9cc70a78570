"""handoff's operator commands: ``funnel token`` (issue, list and revoke the API's bearer
tokens) and ``funnel migrate handoff``.

Tokens are stored in handoff's schema as a hash only; ``create`` prints the token once.
The database is ``FUNNEL_HANDOFF_DATABASE_URL`` and the signing secret
``FUNNEL_AUTH_SECRET``, the same settings the handoff service reads.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import asyncpg
import typer

from funnel_common.auth import ROLES, Role

if TYPE_CHECKING:
    from handoff.models import TokenOut
    from handoff.settings import HandoffSettings

tokens_app = typer.Typer(help="Bearer tokens for the handoff API (stored hashed, revocable).")


# handoff is imported when a token command runs, not for every `funnel` invocation.


def _settings() -> HandoffSettings:
    from handoff.settings import HandoffSettings

    return HandoffSettings()


async def _connect(settings: HandoffSettings) -> asyncpg.Connection:
    from funnel_common.db import migrate_dsn
    from handoff.runtime import MIGRATIONS, SCHEMA

    # The service may never have started: the token table is created here if needed.
    await migrate_dsn(settings.database_url, schema=SCHEMA, directory=MIGRATIONS)
    connection: asyncpg.Connection = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": "handoff"}
    )
    return connection


async def _create(role: Role, subject: str, team: str | None, days: int) -> str:
    from handoff import tokens

    settings = _settings()
    connection = await _connect(settings)
    try:
        _, token = await tokens.create_token(
            connection,
            settings.common.auth_secret,
            subject=subject,
            role=role,
            team=team,
            lifetime=timedelta(days=days),
        )
    finally:
        await connection.close()
    return token


@tokens_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="rep, manager or admin")],
    subject: Annotated[str, typer.Option(help="Who the token is for: the rep or manager id")],
    team: Annotated[str | None, typer.Option(help="The manager's team")] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Lifetime in days")] = 90,
) -> None:
    """Issue a token and print it once; only its hash is stored."""
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    if role == "manager" and team is None:
        raise typer.BadParameter("a manager token needs --team", param_hint="--team")
    typer.echo(asyncio.run(_create(role, subject, team, days)))


async def _list() -> list[TokenOut]:
    from handoff import tokens

    connection = await _connect(_settings())
    try:
        return await tokens.list_tokens(connection)
    finally:
        await connection.close()


@tokens_app.command("list")
def list_() -> None:
    """Issued tokens (never the tokens themselves)."""
    # Tab-separated, whole ids: meant to be read and piped (grep, cut) as much as seen.
    typer.echo("token_id\tsubject\trole\tteam\texpires_at\trevoked_at")
    for token in asyncio.run(_list()):
        fields = (
            str(token.token_id),
            token.subject,
            token.role,
            token.team_id or "-",
            token.expires_at.isoformat(timespec="seconds"),
            token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "-",
        )
        typer.echo("\t".join(fields))


async def _revoke(token_id: UUID) -> bool:
    from handoff import tokens

    connection = await _connect(_settings())
    try:
        return await tokens.revoke_token(connection, token_id)
    finally:
        await connection.close()


@tokens_app.command("revoke")
def revoke(token_id: UUID) -> None:
    """Revoke a token by its id (from ``funnel token list``)."""
    if not asyncio.run(_revoke(token_id)):
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {token_id}")


def migrate() -> None:
    """Apply handoff's pending migrations (``FUNNEL_HANDOFF_DATABASE_URL``)."""
    from funnel_common.db import migrate_dsn
    from handoff.runtime import MIGRATIONS, SCHEMA

    database_url = _settings().database_url
    applied = asyncio.run(migrate_dsn(database_url, schema=SCHEMA, directory=MIGRATIONS))
    typer.echo(f"handoff: {len(applied)} migration(s) applied")
    for version in applied:
        typer.echo(f"  {version}")
