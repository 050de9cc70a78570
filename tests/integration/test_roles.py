"""Least privilege in PostgreSQL: each service's role owns its schema and cannot reach
another's (funnel_tools.pgroles, what `funnel dev` runs; CloudNativePG does the same)."""

from __future__ import annotations

import itertools
from pathlib import Path

import asyncpg
import pytest

from funnel_common.db import migrate_dsn
from funnel_tools.pgroles import SERVICE_ROLES, provisioning_sql, role_dsn
from handoff.runtime import MIGRATIONS as HANDOFF_MIGRATIONS
from lead_intake.runtime import MIGRATIONS as INTAKE_MIGRATIONS
from metrics.runtime import MIGRATIONS as METRICS_MIGRATIONS

MIGRATIONS: dict[str, Path] = {
    "intake": INTAKE_MIGRATIONS,
    "handoff": HANDOFF_MIGRATIONS,
    "metrics": METRICS_MIGRATIONS,
}


async def _provision(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(provisioning_sql(database_url.rsplit("/", 1)[1]))
    finally:
        await connection.close()


@pytest.fixture
async def provisioned(database_url: str) -> dict[str, str]:
    """Each role's database URL, its schema migrated by the role itself."""
    await _provision(database_url)
    urls = {role: role_dsn(database_url, role) for role in SERVICE_ROLES.values()}
    for role, url in urls.items():
        await migrate_dsn(url, schema=role, directory=MIGRATIONS[role])
    return urls


async def _as(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_a_service_role_is_refused_on_every_other_services_schema(
    provisioned: dict[str, str],
) -> None:
    for role, other in itertools.permutations(provisioned, 2):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"schema {other}"):
            await _as(provisioned[role], f"SELECT count(*) FROM {other}.outbox")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(provisioned[role], f"CREATE TABLE {other}.planted (id int)")


async def test_a_service_role_owns_its_schema_and_the_tables_its_migrations_made(
    provisioned: dict[str, str],
) -> None:
    for role, url in provisioned.items():
        assert await _as(url, f"SELECT count(*) FROM {role}.outbox") == 0
        owners = await _as(
            url,
            "SELECT array_agg(DISTINCT tableowner::text) FROM pg_tables "
            f"WHERE schemaname = '{role}'",
        )
        assert owners == [role]


async def test_only_metrics_may_create_schemas_for_its_replays(
    provisioned: dict[str, str],
) -> None:
    for role, url in provisioned.items():
        create = f"CREATE SCHEMA {role}_replay_test"
        if role == "metrics":
            await _as(url, create)
        else:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(url, create)


async def test_a_database_from_before_roles_is_handed_over_to_them(database_url: str) -> None:
    # `funnel dev` data directories made before roles: everything owned by the superuser.
    for role, directory in MIGRATIONS.items():
        await migrate_dsn(database_url, schema=role, directory=directory)

    await _provision(database_url)
    await _provision(database_url)  # every `funnel dev` start runs it again

    for role in MIGRATIONS:
        url = role_dsn(database_url, role)
        assert await migrate_dsn(url, schema=role, directory=MIGRATIONS[role]) == []
        # The outbox's bigserial sequence came along with its table.
        inserted = await _as(
            url,
            f"INSERT INTO {role}.outbox (event_id, event_type, topic, event_key, payload) "
            "VALUES (gen_random_uuid(), 't', 't', '\\x00', '\\x00') RETURNING seq",
        )
        assert inserted == 1
