"""asyncpg pool per service schema, and the migrations runner.

Each service owns one schema; its pool sets ``search_path`` to it, so service SQL is
unqualified. Migrations are numbered ``.sql`` files: the common ones (outbox, inbox)
first, then the service's own, each recorded in ``<schema>.schema_migrations`` with
the SHA-256 of its text. A file edited after it was applied stops the migration loudly:
the database no longer matches what the repository says built it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

COMMON_MIGRATIONS = Path(str(resources.files("funnel_common") / "migrations"))
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Errors that mean "the database is not there right now", as opposed to "this statement
# is wrong": callers answer 503 or retry for these, and never park an event for them.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A pooled connection whose server has just gone (PostgreSQL's fast shutdown) can
    # still be consuming the error when the next statement is sent: asyncpg reports
    # "another operation is in progress" rather than a connection error. The fault
    # suite met it as a 500 on BEGIN; nothing had been stored.
    asyncpg.InternalClientError,
)


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` says PostgreSQL is unreachable or shutting down."""
    return isinstance(error, UNAVAILABLE_ERRORS)


def _check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


class _BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool whose every ``acquire`` has a deadline unless the caller gives one.

    asyncpg applies an acquire's timeout to the matching release too, and a release waits
    for the server to confirm a cancelled statement: against a frozen server (stopped,
    partitioned) an unbounded release would hold the request after its statement timed
    out. One place bounds both for every caller (requests, consumers, the outbox)."""

    def __init__(self, *args: Any, acquire_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._default_acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(
            timeout=self._default_acquire_timeout if timeout is None else timeout
        )


async def create_pool(
    dsn: str,
    *,
    schema: str,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 5.0,
    acquire_timeout: float | None = None,
    statement_timeout: float = 30.0,
) -> asyncpg.Pool:
    """A pool whose connections use ``schema``; fails fast when PostgreSQL is down.

    A service's pool (:func:`funnel_common.service.open_runtime`) takes both timeouts
    from its settings (a few seconds): a request then gets its answer within about
    ``acquire_timeout`` + ``statement_timeout`` when PostgreSQL hangs, and a timeout is
    :func:`is_unavailable`, so that answer is 503. Batch tools (replay) keep longer ones.
    """
    # What asyncpg.create_pool does, with our pool class (it takes no pool class).
    pool = _BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=connect_timeout,
        command_timeout=statement_timeout,
        server_settings={"search_path": _check_schema(schema), "application_name": schema},
    )
    return await pool


class MigrationChanged(RuntimeError):
    """An applied migration file's text differs from what was applied."""


def _migration_files(directory: Path, origin: str) -> list[tuple[str, str]]:
    files = sorted(p for p in directory.glob("*.sql") if re.match(r"^\d{4}_", p.name))
    return [(f"{origin}:{path.stem}", path.read_text()) for path in files]


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def migrate(connection: asyncpg.Connection, *, schema: str, directory: Path) -> list[str]:
    """Apply the common and the service's pending migrations to ``schema``.

    All of it runs in one transaction under an advisory lock on the schema name, so
    two replicas starting together apply each file once and a failure leaves nothing
    half-done. Returns the versions applied now.
    """
    schema = _check_schema(schema)
    pending = _migration_files(COMMON_MIGRATIONS, "common") + _migration_files(directory, "service")
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext('funnel.migrations'), hashtext($1))", schema
        )
        # Created only when missing: CREATE SCHEMA (even IF NOT EXISTS) needs the right
        # to create schemas in the database, which a service's own role has not: its
        # schema is made for it, owned by it (funnel_tools.pgroles, CloudNativePG).
        if not await connection.fetchval(
            "SELECT true FROM pg_namespace WHERE nspname = $1", schema
        ):
            await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.execute(f"SET LOCAL search_path TO {schema}")
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        # Databases migrated before checksums were kept get theirs on this run.
        await connection.execute(
            "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text"
        )
        done = {
            row["version"]: row["checksum"]
            for row in await connection.fetch("SELECT version, checksum FROM schema_migrations")
        }
        applied = []
        for version, sql in pending:
            checksum = _checksum(sql)
            if version in done:
                if done[version] is None:
                    await connection.execute(
                        "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                        version,
                        checksum,
                    )
                elif done[version] != checksum:
                    raise MigrationChanged(
                        f"migration {version} of schema {schema} was edited after it was "
                        "applied; add a new numbered migration instead"
                    )
                continue
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                version,
                checksum,
            )
            applied.append(version)
    if applied:
        log.info("migrations applied", extra={"schema": schema, "versions": applied})
    return applied


async def migrate_dsn(dsn: str, *, schema: str, directory: Path) -> list[str]:
    """Open a connection, migrate, close it."""
    connection: Any = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(connection, schema=schema, directory=directory)
    finally:
        await connection.close()
