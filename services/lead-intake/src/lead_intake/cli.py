"""lead-intake's operator commands: ``funnel migrate lead-intake``."""

from __future__ import annotations

import asyncio

import typer


def migrate() -> None:
    """Apply lead-intake's pending migrations (``FUNNEL_INTAKE_DATABASE_URL``)."""
    from funnel_common.db import migrate_dsn
    from lead_intake.runtime import MIGRATIONS, SCHEMA
    from lead_intake.settings import IntakeSettings

    database_url = IntakeSettings().database_url
    applied = asyncio.run(migrate_dsn(database_url, schema=SCHEMA, directory=MIGRATIONS))
    typer.echo(f"lead-intake: {len(applied)} migration(s) applied")
    for version in applied:
        typer.echo(f"  {version}")
