"""What a connector refuses, as named exceptions the API maps to answers in one place.

Each carries the HTTP ``status`` to answer, a stable ``slug`` for the problem ``type``, a
human ``title``, and per instance a machine-readable ``code`` and the offending ``field``
(a path into the vendor's payload), so a refusal is precise without echoing the payload
(which may hold personal data).
"""

from __future__ import annotations

from typing import ClassVar


class ConnectorError(Exception):
    """A delivery (or one event in it) that a connector will not apply."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "connector-refused"
    title: ClassVar[str] = "The delivery was refused"

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, field={self.field!r})"


class ConnectorAuthError(ConnectorError):
    """Not provably from the vendor: a missing, malformed or wrong signature, a stale
    timestamp, or another organisation's message (answered 401)."""

    status: ClassVar[int] = 401
    slug: ClassVar[str] = "connector-unauthenticated"
    title: ClassVar[str] = "The delivery's signature or sender is missing, wrong or stale"


class ConnectorPayloadError(ConnectorError):
    """Authentic but unusable: malformed, or a value we cannot map exactly (answered 422)."""

    status: ClassVar[int] = 422
    slug: ClassVar[str] = "connector-payload"
    title: ClassVar[str] = "The delivery's payload cannot be mapped"

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(message, code=code, field=field)


class WrongCurrency(ConnectorPayloadError):
    """Money in a currency other than the reporting currency: refused, never converted
    and never skipped (answered 422, code ``currency_mismatch``)."""

    slug: ClassVar[str] = "connector-currency"
    title: ClassVar[str] = "The amount is not in the reporting currency"

    def __init__(self, field: str, currency: str, reporting_currency: str) -> None:
        super().__init__(
            field,
            f"{currency} is not the reporting currency {reporting_currency}",
            "currency_mismatch",
        )
        self.currency = currency
        self.reporting_currency = reporting_currency
