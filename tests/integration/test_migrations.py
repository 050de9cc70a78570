from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from funnel_cli.main import app as cli
from funnel_common.db import MigrationChanged, migrate_dsn


def _service_migrations(tmp_path: Path) -> Path:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
    (tmp_path / "README.txt").write_text("not a migration")
    return tmp_path


async def test_migrations_apply_once_and_a_second_run_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    directory = _service_migrations(tmp_path)

    first = await migrate_dsn(database_url, schema="svc", directory=directory)
    second = await migrate_dsn(database_url, schema="svc", directory=directory)

    assert first == [
        "common:0001_outbox",
        "common:0002_inbox",
        "common:0003_access_tokens",
        "common:0004_outbox_broker",
        "common:0005_person_keys",
        "service:0001_things",
        "service:0002_more",
    ]
    assert second == []


async def test_two_replicas_migrating_at_once_apply_each_file_once(
    database_url: str, tmp_path: Path
) -> None:
    directory = _service_migrations(tmp_path)

    results = await asyncio.gather(
        *(migrate_dsn(database_url, schema="svc", directory=directory) for _ in range(4))
    )

    applied = sorted(version for result in results for version in result)
    assert len(applied) == 7
    assert len(set(applied)) == 7
    connection = await asyncpg.connect(database_url)
    try:
        columns = await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema='svc' "
            "AND table_name='things' ORDER BY column_name"
        )
    finally:
        await connection.close()
    assert [row["column_name"] for row in columns] == ["id", "name"]


async def test_a_failing_migration_leaves_nothing_half_applied(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE broken (id nosuchtype);")

    try:
        await migrate_dsn(database_url, schema="svc", directory=tmp_path)
    except asyncpg.PostgresError:
        pass
    else:
        raise AssertionError("the broken migration should have failed")

    connection = await asyncpg.connect(database_url)
    try:
        schema = await connection.fetchval("SELECT 1 FROM pg_namespace WHERE nspname='svc'")
    finally:
        await connection.close()
    assert schema is None


async def test_a_migration_edited_after_it_was_applied_stops_the_next_run(
    database_url: str, tmp_path: Path
) -> None:
    directory = _service_migrations(tmp_path)
    await migrate_dsn(database_url, schema="svc", directory=directory)
    (directory / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN label text;")

    with pytest.raises(MigrationChanged, match="service:0002_more"):
        await migrate_dsn(database_url, schema="svc", directory=directory)


async def test_a_database_migrated_before_checksums_gets_them_and_is_then_checked(
    database_url: str, tmp_path: Path
) -> None:
    directory = _service_migrations(tmp_path)
    await migrate_dsn(database_url, schema="svc", directory=directory)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("ALTER TABLE svc.schema_migrations DROP COLUMN checksum")
        await migrate_dsn(database_url, schema="svc", directory=directory)
        missing = await connection.fetchval(
            "SELECT count(*) FROM svc.schema_migrations WHERE checksum IS NULL"
        )
    finally:
        await connection.close()
    (directory / "0001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")

    assert missing == 0
    with pytest.raises(MigrationChanged):
        await migrate_dsn(database_url, schema="svc", directory=directory)


def test_funnel_migrate_applies_a_service_schema_then_finds_nothing_to_do(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNEL_HANDOFF_DATABASE_URL", database_url)
    runner = CliRunner()

    first = runner.invoke(cli, ["migrate", "handoff"])
    second = runner.invoke(cli, ["migrate", "handoff"])

    assert first.exit_code == 0, first.output
    assert "service:0001_init" in first.output
    assert second.exit_code == 0, second.output
    assert "0 migration(s) applied" in second.output
