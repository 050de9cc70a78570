"""Stripe: ``Stripe-Signature`` verification, and subscription events as account events.

Signature, as Stripe documents it ("Verify webhook signatures manually"): the header is
``t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]``; each ``v1`` is the hex
HMAC-SHA256 of ``<t>.<raw body>`` under the endpoint's signing secret (``whsec_...``).
Several ``v1`` appear while a secret is being rolled; other schemes are ignored. A
timestamp more than the tolerance (300 s, Stripe's default) away from now is refused,
in either direction. Verification here is a function of ``now``; Stripe's library reads
the clock itself.

Events (``customer.subscription.created|updated|deleted``) map onto our account events,
with the Stripe customer id as the account, the event's ``created`` as ``occurred_at``
and ``stripe:<event id>`` as the webhook id. What the subscription's ``status`` means:

- ``active``, ``past_due``: a paying customer (past_due is dunning, not yet lost);
  ``created`` -> ``activated``; ``updated`` -> ``activated`` when the status just came
  from a non-paying one (``previous_attributes.status``), else ``arr_changed``;
- ``trialing``, ``incomplete``: not a customer yet -> ignored (a trial that converts
  sends ``updated`` with ``previous_attributes.status = "trialing"`` -> ``activated``);
- ``canceled``, ``incomplete_expired``, ``unpaid``, ``paused``, and every ``deleted``
  -> ``churned`` (for a subscription never activated that records nothing in retention,
  whose cohort is the customers active at the quarter's start).

ARR (:func:`annual_recurring_revenue`) is exact: the sum over the subscription's
licensed items of unit amount (``unit_amount_decimal``, which may hold fractions of a
minor unit, else ``unit_amount``) x billed quantity x periods per year (day 365, week
52, month 12, year 1, each divided by ``interval_count``), computed as a fraction and
rounded once, half up, to a whole minor unit. Metered items are usage, not committed
revenue, and count 0. Tiered prices, a truncated item list, and any currency other than
the reporting currency are refused by name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lead_intake.connectors.delivery import AccountOutcome, Ignored, Mapped
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError
from lead_intake.connectors.money import MAX_MINOR_UNITS, check_currency
from lead_intake.models import AccountWebhook
from lead_intake.outcomes import AccountAction

SIGNATURE_HEADER = "Stripe-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
PAYING_STATUSES = frozenset({"active", "past_due"})
NOT_YET_STATUSES = frozenset({"trialing", "incomplete"})
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired", "unpaid", "paused"})

PERIODS_PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}

# Currencies whose minor unit in Stripe's API is documented as a special case (or
# differs from ISO 4217): refused as a reporting currency rather than guessed.
UNCONFIRMED_MINOR_UNITS = frozenset({"HUF", "ISK", "MGA", "TWD", "UGX"})


class StripeSettings(BaseSettings):
    """Stripe connector settings, env prefix ``FUNNEL_INTAKE_STRIPE_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_STRIPE_", extra="ignore")

    enabled: bool = Field(default=False, description="serve `POST /v1/connectors/stripe`")
    webhook_secret: SecretStr = Field(
        default=SecretStr("dev-stripe-webhook-secret"),
        description="the endpoint's signing secret (`whsec_...`)",
    )
    previous_webhook_secret: SecretStr | None = Field(
        default=None, description="the previous signing secret, while rolling it"
    )
    signature_tolerance_seconds: int = Field(
        default=DEFAULT_TOLERANCE_SECONDS,
        ge=1,
        le=3600,
        description="the most a `Stripe-Signature` timestamp may be off from now",
    )
    # Links the account to the deal that won it (closed loop).
    deal_id_metadata_key: str = Field(
        default="funnel_deal_id",
        description="the subscription metadata key holding our deal id (e.g. `salesforce:006...`)",
    )

    def secrets(self) -> list[str]:
        """The secrets a delivery may be signed with, current first."""
        secrets = [self.webhook_secret.get_secret_value()]
        if self.previous_webhook_secret is not None:
            secrets.append(self.previous_webhook_secret.get_secret_value())
        return secrets


def signature_digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>``: one ``v1`` value."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(
    header: str | None,
    *,
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """The matching ``v1`` signature (a key for replay detection), or
    :class:`ConnectorAuthError`."""
    if not header:
        raise ConnectorAuthError(f"{SIGNATURE_HEADER} is required", code="signature_missing")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            raise ConnectorAuthError("malformed signature header", code="signature_malformed")
        if name == "t":
            timestamps.append(value)
        elif name == SIGNATURE_SCHEME:
            signatures.append(value)
    if not timestamps or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise ConnectorAuthError("no timestamp in the signature header", code="signature_malformed")
    if len(timestamps[0]) > 12:
        raise ConnectorAuthError("the timestamp is not unix seconds", code="signature_malformed")
    if not signatures:
        raise ConnectorAuthError("no v1 signature in the header", code="signature_missing")
    timestamp = int(timestamps[0])
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise ConnectorAuthError("the timestamp is outside the tolerance", code="timestamp_stale")
    for secret in secrets:
        expected = signature_digest(secret, timestamp, body)
        for signature in signatures:
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return expected
    raise ConnectorAuthError("no signature matches", code="signature_mismatch")


# --- payloads: only the fields we read ---------------------------------------------


class _StripeModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StripeRecurring(_StripeModel):
    interval: Literal["day", "week", "month", "year"]
    interval_count: int = Field(default=1, ge=1, le=1000, strict=True)
    usage_type: Literal["licensed", "metered"] = "licensed"


class StripeTransformQuantity(_StripeModel):
    divide_by: int = Field(ge=1, strict=True)
    round: Literal["up", "down"]


class StripePrice(_StripeModel):
    id: str
    currency: str
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    unit_amount: int | None = Field(default=None, ge=0, strict=True)
    unit_amount_decimal: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    recurring: StripeRecurring | None = None
    transform_quantity: StripeTransformQuantity | None = None


class StripeSubscriptionItem(_StripeModel):
    id: str
    price: StripePrice
    quantity: int | None = Field(default=None, ge=0, strict=True)


class StripeItemList(_StripeModel):
    data: list[StripeSubscriptionItem]
    has_more: bool = Field(default=False, strict=True)


class StripeCustomerRef(_StripeModel):
    id: str


class StripeSubscription(_StripeModel):
    id: str
    customer: str | StripeCustomerRef
    status: str
    currency: str
    items: StripeItemList
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def customer_id(self) -> str:
        return self.customer if isinstance(self.customer, str) else self.customer.id


class StripeEventData(_StripeModel):
    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None = None


class StripeEvent(_StripeModel):
    id: str
    type: str
    created: int = Field(ge=0, le=4_102_444_800, strict=True)
    livemode: bool = Field(default=False, strict=True)
    data: StripeEventData


# --- mapping -----------------------------------------------------------------------


def map_subscription_event(
    body: bytes, settings: StripeSettings, reporting_currency: str
) -> AccountOutcome:
    """A verified delivery as an account webhook, or ignored with a reason; refused with
    :class:`ConnectorPayloadError` (or :class:`WrongCurrency`) when it cannot be mapped."""
    try:
        event = StripeEvent.model_validate_json(body)
    except ValidationError as error:
        raise _payload_error("", error) from error
    if event.type not in SUBSCRIPTION_EVENTS:
        return Ignored(event.id, "not_a_subscription_event")
    try:
        subscription = StripeSubscription.model_validate(event.data.object)
    except ValidationError as error:
        raise _payload_error("data.object.", error) from error
    check_currency("data.object.currency", subscription.currency, reporting_currency)
    previous_status = (event.data.previous_attributes or {}).get("status")
    action = subscription_action(
        event.type,
        subscription.status,
        previous_status if isinstance(previous_status, str) else None,
    )
    if action is None:
        return Ignored(event.id, f"status_{subscription.status}")
    arr = (
        None if action == "churned" else annual_recurring_revenue(subscription, reporting_currency)
    )
    fields = {
        "webhook_id": f"stripe:{event.id}",
        "event": action,
        "occurred_at": datetime.fromtimestamp(event.created, UTC),
        "account_id": subscription.customer_id,
        "arr_cents": arr,
        "currency": reporting_currency.upper(),
        "deal_id": subscription.metadata.get(settings.deal_id_metadata_key) or None,
    }
    try:
        return Mapped(event.id, AccountWebhook.model_validate(fields))
    except ValidationError as error:
        raise _payload_error("", error) from error


def subscription_action(
    event_type: str, status: str, previous_status: str | None
) -> AccountAction | None:
    """What a subscription event means for its customer's account; None: nothing yet."""
    if status not in PAYING_STATUSES | NOT_YET_STATUSES | ENDED_STATUSES:
        raise ConnectorPayloadError(
            "data.object.status", f"unknown subscription status {status!r}", "status_unknown"
        )
    if event_type == "customer.subscription.deleted" or status in ENDED_STATUSES:
        return "churned"
    if status in NOT_YET_STATUSES:
        return None
    if event_type == "customer.subscription.created":
        return "activated"
    if previous_status is not None and previous_status not in PAYING_STATUSES:
        return "activated"
    return "arr_changed"


def annual_recurring_revenue(subscription: StripeSubscription, reporting_currency: str) -> int:
    """The subscription's ARR in minor units of the reporting currency (module docstring)."""
    currency = check_currency("data.object.currency", subscription.currency, reporting_currency)
    if currency in UNCONFIRMED_MINOR_UNITS:
        raise ConnectorPayloadError(
            "data.object.currency",
            f"Stripe's minor unit for {currency} is a documented special case",
            "currency_minor_unit_unconfirmed",
        )
    if subscription.items.has_more:
        raise ConnectorPayloadError(
            "data.object.items.has_more",
            "the event lists only some of the subscription's items",
            "items_truncated",
        )
    total = Fraction(0)
    for index, item in enumerate(subscription.items.data):
        field = f"data.object.items.data[{index}].price"
        total += _item_annual(item, field, reporting_currency)
    arr = floor(total + Fraction(1, 2))
    if arr > MAX_MINOR_UNITS:
        raise ConnectorPayloadError(
            "data.object.items", f"ARR above {MAX_MINOR_UNITS} minor units", "amount_too_large"
        )
    return arr


def _item_annual(item: StripeSubscriptionItem, field: str, reporting_currency: str) -> Fraction:
    price = item.price
    check_currency(f"{field}.currency", price.currency, reporting_currency)
    if price.recurring is None:
        raise ConnectorPayloadError(
            f"{field}.recurring", "not a recurring price", "price_not_recurring"
        )
    if price.recurring.usage_type == "metered":
        return Fraction(0)
    if price.billing_scheme == "tiered" or (
        price.unit_amount is None and price.unit_amount_decimal is None
    ):
        raise ConnectorPayloadError(
            f"{field}.billing_scheme",
            "tiered prices carry no unit amount in the event",
            "price_tiered_unsupported",
        )
    unit = Fraction(
        price.unit_amount_decimal
        if price.unit_amount_decimal is not None
        else price.unit_amount or 0
    )
    quantity = Fraction(1 if item.quantity is None else item.quantity)
    if price.transform_quantity is not None:
        packages = quantity / price.transform_quantity.divide_by
        quantity = Fraction(
            -(-packages.numerator // packages.denominator)
            if price.transform_quantity.round == "up"
            else packages.numerator // packages.denominator
        )
    periods = Fraction(PERIODS_PER_YEAR[price.recurring.interval], price.recurring.interval_count)
    return unit * quantity * periods


def _payload_error(prefix: str, error: ValidationError) -> ConnectorPayloadError:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return ConnectorPayloadError(f"{prefix}{location}" or "body", first["msg"], first["type"])
