"""Stripe: Stripe-Signature as documented, and subscription events as account events with
an exact ARR."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from math import lcm
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from lead_intake.connectors.delivery import Ignored, Mapped
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError, WrongCurrency
from lead_intake.connectors.stripe import (
    StripeSettings,
    StripeSubscription,
    annual_recurring_revenue,
    map_subscription_event,
    signature_digest,
    subscription_action,
    verify_signature,
)
from lead_intake.models import AccountWebhook
from tests.unit.intake.connectors.vendor_fixtures import vendor_json

SUBSCRIPTION: dict[str, Any] = vendor_json("stripe", "subscription.json")
ENVELOPE: dict[str, Any] = vendor_json("stripe", "event_envelope.json")
DOCS_HEADER = (
    "t=1492774577,"
    "v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,"
    "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
)
SECRET = "whsec_test_secret"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = StripeSettings(enabled=True, webhook_secret=SecretStr(SECRET))


def _event(
    event_type: str,
    subscription: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
) -> bytes:
    event = copy.deepcopy(ENVELOPE)
    event["type"] = event_type
    event["data"] = {"object": subscription or SUBSCRIPTION}
    if previous is not None:
        event["data"]["previous_attributes"] = previous
    return json.dumps(event).encode()


def _subscription(**changes: Any) -> dict[str, Any]:
    subscription = copy.deepcopy(SUBSCRIPTION)
    subscription.update(changes)
    return subscription


def _items(*prices: dict[str, Any], quantity: int = 1) -> dict[str, Any]:
    return {
        "object": "list",
        "has_more": False,
        "data": [
            {"id": f"si_{i}", "object": "subscription_item", "quantity": quantity, "price": p}
            for i, p in enumerate(prices)
        ],
    }


def _price(
    amount: int | str, interval: str = "month", count: int = 1, **extra: Any
) -> dict[str, Any]:
    price = {
        "id": "price_x",
        "object": "price",
        "currency": "usd",
        "billing_scheme": "per_unit",
        "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"},
        "transform_quantity": None,
        **extra,
    }
    if isinstance(amount, str):
        price |= {"unit_amount": None, "unit_amount_decimal": amount}
    else:
        price |= {"unit_amount": amount, "unit_amount_decimal": str(amount)}
    return price


def _account(outcome: object) -> AccountWebhook:
    assert isinstance(outcome, Mapped)
    webhook = outcome.webhook
    assert isinstance(webhook, AccountWebhook)
    return webhook


# --- Stripe-Signature ----------------------------------------------------------------


def _header(body: bytes, *, at: datetime = NOW, secrets: tuple[str, ...] = (SECRET,)) -> str:
    timestamp = int(at.timestamp())
    oracle = [
        hmac.new(s.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for s in secrets
    ]
    return ",".join([f"t={timestamp}", *(f"v1={signature}" for signature in oracle)])


def test_a_signature_made_as_stripe_documents_verifies() -> None:
    body = _event("customer.subscription.created")

    verified = verify_signature(_header(body), body=body, secrets=[SECRET], now=NOW)

    assert verified == signature_digest(SECRET, int(NOW.timestamp()), body)


def test_the_documented_header_parses_and_its_v0_is_ignored() -> None:
    sent = datetime.fromtimestamp(1492774577, UTC)

    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(DOCS_HEADER, body=b"{}", secrets=[SECRET], now=sent)

    assert refused.value.code == "signature_mismatch"  # parsed, in time, not our secret


def test_a_rolled_secret_verifies_with_either_signature() -> None:
    body = b'{"id": "evt_1"}'
    header = _header(body, secrets=("whsec_old", "whsec_new"))

    assert verify_signature(header, body=body, secrets=["whsec_new"], now=NOW)
    assert verify_signature(header, body=body, secrets=["whsec_other", "whsec_old"], now=NOW)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("", "signature_missing"),
        (
            "t=1772366400,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
            "signature_missing",
        ),
        ("t=1772366400", "signature_missing"),
        ("v1=abc", "signature_malformed"),
        ("t=soon,v1=abc", "signature_malformed"),
        ("t=1772366400000000,v1=abc", "signature_malformed"),
        ("garbage", "signature_malformed"),
    ],
)
def test_a_missing_or_malformed_header_is_refused(header: str | None, code: str) -> None:
    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(header, body=b"{}", secrets=[SECRET], now=NOW)

    assert refused.value.code == code
    assert refused.value.status == 401


@pytest.mark.parametrize("offset", [timedelta(seconds=301), timedelta(seconds=-301)])
def test_a_timestamp_outside_the_tolerance_is_refused(offset: timedelta) -> None:
    body = b"{}"

    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(_header(body, at=NOW - offset), body=body, secrets=[SECRET], now=NOW)

    assert refused.value.code == "timestamp_stale"


def test_a_forged_signature_is_refused() -> None:
    body = b"{}"

    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(
            _header(body, secrets=("whsec_forger",)), body=body, secrets=[SECRET], now=NOW
        )

    assert refused.value.code == "signature_mismatch"


@settings(deadline=None)  # a shared CI machine may pause any example
@given(
    body=st.binary(min_size=1, max_size=300),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
    target=st.sampled_from(["body", "signature", "timestamp"]),
)
def test_any_tampering_is_refused(body: bytes, position: int, flip: int, target: str) -> None:
    header = _header(body)
    timestamp, signature = (part.partition("=")[2] for part in header.split(","))
    if target == "body":
        index = position % len(body)
        body = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    elif target == "signature":
        index = position % len(signature)
        signature = (
            signature[:index] + ("0" if signature[index] != "0" else "1") + signature[index + 1 :]
        )
    else:
        timestamp = str(int(timestamp) - 1 - position % 299)

    with pytest.raises(ConnectorAuthError):
        verify_signature(f"t={timestamp},v1={signature}", body=body, secrets=[SECRET], now=NOW)


# --- events --------------------------------------------------------------------------


def test_the_documented_subscription_created_activates_its_customer() -> None:
    webhook = _account(
        map_subscription_event(_event("customer.subscription.created"), SETTINGS, "USD")
    )

    assert webhook.event == "activated"
    assert webhook.account_id == "cus_NZbFQAsc0ptasX"
    assert webhook.arr_cents == 24000  # 2000 cents a month
    assert webhook.currency == "USD"
    assert webhook.webhook_id == "stripe:evt_1MoS6tLgUG5tbmjchDsX6fiT"
    assert webhook.occurred_at == datetime.fromtimestamp(ENVELOPE["created"], UTC)
    assert webhook.deal_id is None


def test_an_upgrade_changes_the_arr() -> None:
    upgraded = _subscription(items=_items(_price(2000), quantity=3))

    webhook = _account(
        map_subscription_event(
            _event(
                "customer.subscription.updated", upgraded, previous={"items": SUBSCRIPTION["items"]}
            ),
            SETTINGS,
            "USD",
        )
    )

    assert (webhook.event, webhook.arr_cents) == ("arr_changed", 72000)


def test_a_trial_that_converts_activates() -> None:
    body = _event("customer.subscription.updated", previous={"status": "trialing"})

    assert _account(map_subscription_event(body, SETTINGS, "USD")).event == "activated"


def test_a_deleted_subscription_churns_its_customer() -> None:
    body = _event("customer.subscription.deleted", _subscription(status="canceled"))

    webhook = _account(map_subscription_event(body, SETTINGS, "USD"))

    assert (webhook.event, webhook.arr_cents) == ("churned", None)


def test_a_trial_is_not_a_customer_yet() -> None:
    body = _event("customer.subscription.created", _subscription(status="trialing"))

    assert map_subscription_event(body, SETTINGS, "USD") == Ignored(
        "evt_1MoS6tLgUG5tbmjchDsX6fiT", "status_trialing"
    )


def test_other_event_types_are_ignored() -> None:
    body = json.dumps(ENVELOPE | {"data": {"object": {}}}).encode()

    assert map_subscription_event(body, SETTINGS, "USD") == Ignored(
        "evt_1MoS6tLgUG5tbmjchDsX6fiT", "not_a_subscription_event"
    )


def test_the_deal_that_won_the_customer_links_through_metadata() -> None:
    body = _event(
        "customer.subscription.created",
        _subscription(metadata={"funnel_deal_id": "salesforce:0065e00000AbCdEAAV"}),
    )

    assert _account(map_subscription_event(body, SETTINGS, "USD")).deal_id == (
        "salesforce:0065e00000AbCdEAAV"
    )


@pytest.mark.parametrize(
    ("event_type", "status", "previous", "action"),
    [
        ("customer.subscription.created", "active", None, "activated"),
        ("customer.subscription.created", "past_due", None, "activated"),
        ("customer.subscription.created", "incomplete", None, None),
        ("customer.subscription.updated", "active", "incomplete", "activated"),
        ("customer.subscription.updated", "active", "unpaid", "activated"),
        ("customer.subscription.updated", "past_due", "active", "arr_changed"),
        ("customer.subscription.updated", "active", None, "arr_changed"),
        ("customer.subscription.updated", "trialing", None, None),
        ("customer.subscription.updated", "unpaid", "past_due", "churned"),
        ("customer.subscription.updated", "incomplete_expired", "incomplete", "churned"),
        ("customer.subscription.updated", "paused", "trialing", "churned"),
        ("customer.subscription.deleted", "canceled", None, "churned"),
    ],
)
def test_what_each_status_means(
    event_type: str, status: str, previous: str | None, action: str | None
) -> None:
    assert subscription_action(event_type, status, previous) == action


def test_an_unknown_status_is_refused_not_guessed() -> None:
    with pytest.raises(ConnectorPayloadError) as refused:
        subscription_action("customer.subscription.updated", "hibernating", None)

    assert (refused.value.field, refused.value.code) == ("data.object.status", "status_unknown")


@pytest.mark.parametrize(
    ("subscription", "field"),
    [
        (_subscription(currency="eur"), "data.object.currency"),
        (
            _subscription(items=_items(_price(100, currency="eur"))),
            "data.object.items.data[0].price.currency",
        ),
    ],
)
def test_another_currency_is_a_named_refusal_never_a_skip(
    subscription: dict[str, Any], field: str
) -> None:
    with pytest.raises(WrongCurrency) as refused:
        map_subscription_event(
            _event("customer.subscription.created", subscription), SETTINGS, "USD"
        )

    assert (refused.value.field, refused.value.code, refused.value.status) == (
        field,
        "currency_mismatch",
        422,
    )


@pytest.mark.parametrize(
    ("items", "code"),
    [
        (
            _items(
                _price(100, billing_scheme="tiered", unit_amount=None, unit_amount_decimal=None)
            ),
            "price_tiered_unsupported",
        ),
        (_items(_price(100)) | {"has_more": True}, "items_truncated"),
        (_items(_price(100, recurring=None)), "price_not_recurring"),
    ],
)
def test_an_arr_we_cannot_compute_exactly_is_refused(items: dict[str, Any], code: str) -> None:
    body = _event("customer.subscription.created", _subscription(items=items))

    with pytest.raises(ConnectorPayloadError) as refused:
        map_subscription_event(body, SETTINGS, "USD")

    assert refused.value.code == code


def test_a_malformed_event_is_refused_naming_the_field() -> None:
    with pytest.raises(ConnectorPayloadError) as refused:
        map_subscription_event(
            _event("customer.subscription.created", _subscription(customer=None)), SETTINGS, "USD"
        )

    assert refused.value.field is not None
    assert refused.value.field.startswith("data.object.customer")


# --- ARR -----------------------------------------------------------------------------


def _arr(*prices: dict[str, Any], quantity: int = 1) -> int:
    return annual_recurring_revenue(
        StripeSubscription.model_validate(_subscription(items=_items(*prices, quantity=quantity))),
        "USD",
    )


@pytest.mark.parametrize(
    ("price", "quantity", "arr"),
    [
        (_price(999, "week"), 1, 51948),  # x 52, not 52.18
        (_price(1, "day", 2), 1, 183),  # 182.5 rounds half up
        (_price(1001, "month", 5), 1, 2402),  # 2402.4
        (_price(120000, "year"), 2, 240000),
        (_price(50000, "year", 3), 1, 16667),  # 16666.67
        (_price("0.5", "month"), 7, 42),  # fractions of a cent per unit
        (
            _price(100, usage_type="metered")
            | {"recurring": {"interval": "month", "usage_type": "metered"}},
            9,
            0,
        ),
        (_price(1000, transform_quantity={"divide_by": 10, "round": "up"}), 11, 24000),  # 2 packs
        (_price(1000, transform_quantity={"divide_by": 10, "round": "down"}), 11, 12000),  # 1 pack
    ],
)
def test_arr_annualises_each_interval_exactly(
    price: dict[str, Any], quantity: int, arr: int
) -> None:
    assert _arr(price, quantity=quantity) == arr


def _arr_oracle(items: list[tuple[str, int, str, int, bool]]) -> int:
    # Integer arithmetic only: every amount scaled by 10^12 (Stripe's decimals), every
    # period by the lcm of the interval counts, then rounded half up.
    per_year = {"day": 365, "week": 52, "month": 12, "year": 1}
    scale = 10**12
    counts = lcm(*(count for _, _, _, count, _ in items)) if items else 1
    numerator = 0
    for amount, quantity, interval, count, metered in items:
        if metered:
            continue
        scaled = int(Decimal(amount) * scale)
        numerator += scaled * quantity * per_year[interval] * (counts // count)
    denominator = scale * counts
    return (2 * numerator + denominator) // (2 * denominator)


item = st.tuples(
    st.one_of(
        st.integers(min_value=0, max_value=10**7).map(str),
        st.decimals(min_value=0, max_value=10**5, places=12, allow_nan=False).map(str),
    ),
    st.integers(min_value=0, max_value=1000),
    st.sampled_from(["day", "week", "month", "year"]),
    st.integers(min_value=1, max_value=12),
    st.booleans(),
)


@settings(deadline=None)
@given(st.lists(item, max_size=8))
def test_random_item_sets_give_the_oracles_arr(
    items: list[tuple[str, int, str, int, bool]],
) -> None:
    prices = []
    for amount, _quantity, interval, count, metered in items:
        price = _price(amount, interval, count)
        price["recurring"]["usage_type"] = "metered" if metered else "licensed"
        prices.append(price)
    subscription = _subscription(items=_items(*prices))
    for index, (_, quantity, *_rest) in enumerate(items):
        subscription["items"]["data"][index]["quantity"] = quantity

    arr = annual_recurring_revenue(StripeSubscription.model_validate(subscription), "USD")

    assert arr == _arr_oracle(items)
