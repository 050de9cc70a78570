"""Vendor decimals onto integer minor units: exact, or refused with a reason."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_intake.connectors.errors import ConnectorPayloadError, WrongCurrency
from lead_intake.connectors.money import (
    MAX_MINOR_UNITS,
    check_currency,
    decimal_to_minor_units,
    minor_unit_exponent,
    minor_units_to_decimal,
)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1500.50", "USD", 150050),
        ("1500", "USD", 150000),
        ("120000.0", "USD", 12000000),  # how Salesforce writes a double
        ("1.5E7", "USD", 1500000000),  # and a large one
        ("0.10", "USD", 10),
        (" 42 ", "USD", 4200),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("0", "USD", 0),
    ],
)
def test_plain_decimals_become_exact_minor_units(text: str, currency: str, minor: int) -> None:
    assert decimal_to_minor_units("amount", text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("10.005", "USD", "amount_inexact"),
        ("1500.5", "JPY", "amount_inexact"),
        ("-1", "USD", "amount_negative"),
        ("1,500", "USD", "amount_format"),
        ("1_500", "USD", "amount_format"),
        ("NaN", "USD", "amount_format"),
        ("Infinity", "USD", "amount_format"),
        ("$5", "USD", "amount_format"),
        ("", "USD", "amount_format"),
        ("1E9999", "USD", "amount_too_large"),
        ("10000000000000.01", "USD", "amount_too_large"),
    ],
)
def test_anything_not_exact_is_refused_with_its_reason(text: str, currency: str, code: str) -> None:
    with pytest.raises(ConnectorPayloadError) as refused:
        decimal_to_minor_units("amount", text, currency)

    assert refused.value.code == code
    assert refused.value.field == "amount"
    assert refused.value.status == 422


@settings(deadline=None)  # a shared CI machine may pause any example
@given(
    minor=st.integers(min_value=0, max_value=MAX_MINOR_UNITS),
    currency=st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"]),
)
def test_every_amount_round_trips_exactly(minor: int, currency: str) -> None:
    text = minor_units_to_decimal(minor, currency)

    assert decimal_to_minor_units("amount", text, currency) == minor


@settings(deadline=None)
@given(
    minor=st.integers(min_value=0, max_value=MAX_MINOR_UNITS),
    extra=st.integers(min_value=1, max_value=9),
)
def test_a_digit_past_the_minor_unit_is_refused_never_rounded(minor: int, extra: int) -> None:
    text = minor_units_to_decimal(minor, "USD") + str(extra)

    with pytest.raises(ConnectorPayloadError) as refused:
        decimal_to_minor_units("amount", text, "USD")

    assert refused.value.code == "amount_inexact"


@settings(deadline=None)
@given(value=st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False))
def test_agrees_with_decimal_arithmetic(value: Decimal) -> None:
    assert decimal_to_minor_units("amount", str(value), "USD") == int(value * 100)


def test_minor_unit_exponents_follow_iso_4217() -> None:
    assert [minor_unit_exponent(c) for c in ("USD", "eur", "JPY", "KWD", "CLF")] == [2, 2, 0, 3, 4]


def test_another_currency_is_refused_by_name() -> None:
    with pytest.raises(WrongCurrency) as refused:
        check_currency("currency", "eur", "USD")

    assert (refused.value.code, refused.value.currency, refused.value.field) == (
        "currency_mismatch",
        "EUR",
        "currency",
    )
    assert check_currency("currency", "usd", "USD") == "USD"
