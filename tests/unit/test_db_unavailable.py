"""Which database errors mean "not there right now" (503, wait) and which mean "this
statement is wrong" (a 4xx or the DLQ): the line every caller relies on."""

from __future__ import annotations

import asyncpg
import pytest

from funnel_common.db import is_unavailable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("pool is closing"),
        # What a pooled connection says when its server has just gone mid-error
        # (met in the fault suite during PostgreSQL's fast shutdown).
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
    ],
)
def test_an_absent_database_is_unavailable(error: Exception) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DataError("invalid input"),
        asyncpg.UndefinedTableError("relation does not exist"),
        ValueError("not a database error"),
    ],
)
def test_a_wrong_statement_is_not_unavailable(error: Exception) -> None:
    assert not is_unavailable(error)
