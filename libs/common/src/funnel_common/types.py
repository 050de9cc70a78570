"""Value types shared by events and HTTP bodies: safe text, money, UTC time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, Strict


def refuse_nul(value: str) -> str:
    """Refuse text PostgreSQL cannot store, at the edge rather than in the database.

    That is a NUL, and a lone surrogate: a JSON body may carry ``"\\ud800"``, which
    Python parses into a ``str`` that no UTF-8 encoder (asyncpg, the event encoder)
    can write.
    """
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError("text must not contain lone surrogates (\\ud800-\\udfff)") from error
    return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest instant the platform stores: nothing in a revenue funnel happened before."""
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Every instant is before this one. Later ones are no real event's, and near the end of
year 9999 PostgreSQL's drivers turn them into ``infinity``."""


def _to_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00+01:00 is a valid aware datetime whose UTC form is before year 1:
    # converting it raises OverflowError, which must be a validation error (a 422), not a
    # 500.
    outside = ValueError(
        f"must be from {EARLIEST:%Y-%m-%d} up to (not including) {LATEST:%Y-%m-%d}, UTC"
    )
    try:
        utc = value.astimezone(UTC)
    except OverflowError as error:
        raise outside from error
    if not EARLIEST <= utc < LATEST:
        raise outside
    return utc


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


SafeText = Annotated[str, AfterValidator(refuse_nul)]
"""Text that PostgreSQL can store."""


# Length bounds come BEFORE the NUL check: placed after a Python validator they are
# checked in Python too, placed first they stay in pydantic's compiled string check.
# Every event of a replay carries several bounded strings (about 8 us of 28 per event).
ShortText = Annotated[str, Field(max_length=200), AfterValidator(refuse_nul)]
Label = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(refuse_nul)]
"""A short identifier-like value (source, campaign, team, reason)."""
NoteText = Annotated[str, Field(max_length=2000), AfterValidator(refuse_nul)]
"""A person's free text: a rejection note, a URL."""

UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_to_utc), PlainSerializer(_rfc3339, return_type=str)
]
"""A timezone-aware instant from 1970 up to year 9999, normalised to UTC and written as
RFC 3339 with ``Z``; anything else is a validation error."""

# Strict: in lax mode pydantic takes ``true`` as 1 and ``"100"`` as 100, so a sender's
# type mistake would become money. JSON integers (and Python ints) only.
Cents = Annotated[int, Strict(), Field(ge=0, le=10**15)]
"""Money in integer minor units of the reporting currency (a JSON integer, never a
string, a boolean or a float)."""

Count = Annotated[int, Strict(), Field(ge=0, le=10_000_000)]
"""A count of things (employees, seats): a JSON integer, never a string or a boolean."""

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

Role = Literal["rep", "manager", "admin", "marketing"]
"""What an API token lets its holder do (funnel_common.auth). ``marketing`` reads
handoffs and the feedback on them, and acts on none."""


def utc_now() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)
