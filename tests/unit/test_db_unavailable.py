"""Which database errors mean "PostgreSQL is not there right now" (503, retry, never park)."""

from __future__ import annotations

import asyncpg

from funnel_common.db import is_unavailable


def test_a_connection_broken_mid_operation_is_unavailable_not_a_bug() -> None:
    # Raised by a pool's release-time reset when PostgreSQL shut down under it.
    broken = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )

    assert is_unavailable(broken)


def test_a_wrong_statement_is_not_unavailable() -> None:
    assert not is_unavailable(asyncpg.UndefinedTableError("relation does not exist"))
