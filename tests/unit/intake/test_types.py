"""The shared value types refuse, as validation errors, what used to be a 500 or money."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from funnel_common.types import Cents, Count, UtcDatetime

instant: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)
cents: TypeAdapter[int] = TypeAdapter(Cents)
count: TypeAdapter[int] = TypeAdapter(Count)


@pytest.mark.parametrize(
    "text",
    [
        '"0001-01-01T00:00:00+01:00"',  # before year 1 in UTC: overflowed converting
        '"9999-12-31T23:30:00-01:00"',  # after year 9999 in UTC: overflowed converting
        '"9999-06-01T00:00:00Z"',  # drivers turn the end of time into infinity
        '"1969-12-31T23:59:59Z"',
    ],
)
def test_an_instant_outside_the_window_is_a_validation_error(text: str) -> None:
    with pytest.raises(ValidationError, match="1970-01-01"):
        instant.validate_json(text)


def test_an_instant_inside_the_window_is_utc() -> None:
    assert instant.validate_json('"1970-01-01T01:00:00+01:00"') == datetime(1970, 1, 1, tzinfo=UTC)
    assert instant.validate_json('"9998-12-31T23:59:59Z"').year == 9998


@pytest.mark.parametrize("text", ["true", '"100"', "100.0", "1e2", "-1"])
def test_money_and_counts_are_strict_non_negative_json_integers(text: str) -> None:
    with pytest.raises(ValidationError):
        cents.validate_json(text)
    with pytest.raises(ValidationError):
        count.validate_json(text)


def test_a_json_integer_is_money() -> None:
    assert cents.validate_json("100") == 100
    assert count.validate_json("250") == 250
