"""handoff's operator commands: ``funnel token`` (issue, list and revoke the API's bearer
tokens) and ``funnel migrate handoff``.

``funnel token create`` is the local bootstrap for the very first admin token: it needs
database access (``FUNNEL_HANDOFF_DATABASE_URL``) and the signing secret
(``FUNNEL_AUTH_SECRET``), the settings the handoff service reads. With an admin token,
everything else is over HTTP (``POST``/``GET``/``DELETE /v1/tokens``), no database access
needed. Either way a token is announced on ``funnel.access`` (through handoff's outbox),
so every service learns of it; the token's text is printed once and kept nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import asyncpg
import typer

from funnel_common.auth import ROLES, Role

if TYPE_CHECKING:
    from handoff.models import TokenOut
    from handoff.settings import HandoffSettings

tokens_app = typer.Typer(help="Bearer tokens for the platform's APIs (revocable, never stored).")


# handoff is imported when a token command runs, not for every `funnel` invocation.


def _settings() -> HandoffSettings:
    from handoff.settings import HandoffSettings

    return HandoffSettings()


@contextlib.asynccontextmanager
async def _unit_of_work(settings: HandoffSettings) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on handoff's schema that wakes handoff's outbox relay after it."""
    from funnel_common import outbox
    from funnel_common.db import create_pool, migrate_dsn
    from handoff.runtime import MIGRATIONS, SCHEMA

    # The service may never have started: its schema is created here if needed.
    await migrate_dsn(settings.database_url, schema=SCHEMA, directory=MIGRATIONS)
    pool = await create_pool(settings.database_url, schema=SCHEMA, max_size=1)
    try:
        async with outbox.transaction(pool) as connection:
            yield connection
    finally:
        await pool.close()


async def _create(role: Role, subject: str, team: str | None, days: int) -> str:
    from handoff import tokens

    settings = _settings()
    async with _unit_of_work(settings) as connection:
        _, token = await tokens.create_token(
            connection,
            settings.common.auth_secret,
            subject=subject,
            role=role,
            team=team,
            lifetime=timedelta(days=days),
        )
    return token


@tokens_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="rep, manager or admin")],
    subject: Annotated[str, typer.Option(help="Who the token is for: the rep or manager id")],
    team: Annotated[str | None, typer.Option(help="The manager's team")] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Lifetime in days")] = 90,
) -> None:
    """Issue a token and print it once (the bootstrap; then ``POST /v1/tokens``)."""
    from pydantic import ValidationError

    from handoff.models import TokenIn

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    try:
        wanted = TokenIn.model_validate(
            {"subject": subject, "role": role, "team": team, "days": days}
        )
    except ValidationError as error:
        problem = error.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else "subject"
        raise typer.BadParameter(problem["msg"], param_hint=f"--{field}") from error
    typer.echo(asyncio.run(_create(wanted.role, wanted.subject, wanted.team, wanted.days)))


async def _list() -> list[TokenOut]:
    from handoff import tokens

    async with _unit_of_work(_settings()) as connection:
        return await tokens.list_tokens(connection)


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
            token.team or "-",
            token.expires_at.isoformat(timespec="seconds"),
            token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "-",
        )
        typer.echo("\t".join(fields))


async def _revoke(token_id: UUID) -> TokenOut | None:
    from handoff import tokens

    async with _unit_of_work(_settings()) as connection:
        return await tokens.revoke_token(connection, token_id)


@tokens_app.command("revoke")
def revoke(token_id: UUID) -> None:
    """Revoke a token by its id (from ``funnel token list``)."""
    revoked = asyncio.run(_revoke(token_id))
    if revoked is None:
        typer.echo(f"no token {token_id}", err=True)
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
