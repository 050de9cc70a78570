"""Vendor money onto ours: decimal strings to integer minor units, exactly or not at all.

CRMs send amounts as decimal text in major units ("1500.50" dollars); we keep an ``int``
of minor units (150050 cents). The conversion is exact integer arithmetic on the decimal
digits: a value with more decimals than the currency has (``"10.005"`` USD) is refused,
never rounded, and so is anything that is not a plain decimal number.
"""

from __future__ import annotations

import re
from decimal import Decimal

from lead_intake.connectors.errors import ConnectorPayloadError, WrongCurrency

# ISO 4217 minor-unit exponents that are not 2 (every other active code has 2).
_EXPONENTS = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
            "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip

# The largest amount an event may carry (funnel_common.types.Cents).
MAX_MINOR_UNITS = 10**15

# Digits, an optional fraction, an optional exponent ("1.5E7" is how Salesforce writes
# large doubles). No sign, no separators, no underscores, no NaN or Infinity: Decimal
# itself would accept " 1_000 " and "-0", which no CRM means as an amount.
_DECIMAL_TEXT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")


def minor_unit_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (ISO 4217): USD 2, JPY 0, KWD 3."""
    return _EXPONENTS.get(currency.upper(), 2)


def check_currency(field: str, currency: str, reporting_currency: str) -> str:
    """The reporting currency, or :class:`WrongCurrency` naming ``field``."""
    if currency.upper() != reporting_currency.upper():
        raise WrongCurrency(field, currency.upper(), reporting_currency.upper())
    return reporting_currency.upper()


def decimal_to_minor_units(field: str, text: str, currency: str) -> int:
    """``text`` (major units, e.g. ``"1500.50"``) as an exact count of minor units."""
    stripped = text.strip()
    if stripped.startswith("-") and _DECIMAL_TEXT.fullmatch(stripped[1:]):
        raise ConnectorPayloadError(field, "an amount cannot be negative", "amount_negative")
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise ConnectorPayloadError(field, "not a plain decimal number", "amount_format")
    _, digits, exponent = Decimal(stripped).as_tuple()
    assert isinstance(exponent, int)  # the pattern admits no NaN or Infinity
    coefficient = int("".join(str(digit) for digit in digits))
    shift = exponent + minor_unit_exponent(currency)
    if coefficient == 0:
        return 0
    too_large = ConnectorPayloadError(
        field, f"more than {MAX_MINOR_UNITS} minor units", "amount_too_large"
    )
    minor: int
    if shift >= 0:
        # Bounded before raising 10 to it: "1E9999" must not build a huge integer.
        if len(str(coefficient)) + shift > len(str(MAX_MINOR_UNITS)):
            raise too_large
        minor = coefficient * 10**shift
    else:
        divisor = 10 ** min(-shift, len(str(coefficient)))
        if coefficient % divisor or -shift > len(str(coefficient)):
            raise ConnectorPayloadError(
                field,
                f"more decimals than {currency.upper()} has; refused rather than rounded",
                "amount_inexact",
            )
        minor = coefficient // divisor
    if minor > MAX_MINOR_UNITS:
        raise too_large
    return minor


def minor_units_to_decimal(minor: int, currency: str) -> str:
    """The inverse of :func:`decimal_to_minor_units`, as a CRM would write it (tests)."""
    exponent = minor_unit_exponent(currency)
    if exponent == 0:
        return str(minor)
    whole, fraction = divmod(minor, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}"
