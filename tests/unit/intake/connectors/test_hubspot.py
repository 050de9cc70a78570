"""HubSpot: signature v3 exactly as documented, and deal events onto our deal webhooks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from lead_intake.connectors.delivery import Ignored, Mapped, Refused
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError, WrongCurrency
from lead_intake.connectors.hubspot import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HubSpotSettings,
    expected_signature,
    map_deal_events,
    signature_uri,
    verify_signature,
)
from lead_intake.connectors.money import MAX_MINOR_UNITS, minor_units_to_decimal
from lead_intake.models import DealWebhook
from tests.unit.intake.connectors.vendor_fixtures import vendor_bytes, vendor_json

VECTOR = vendor_json("hubspot", "signature_v3.json")
VECTOR_SENT = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(VECTOR["timestamp"]))
SECRET = "an-app-client-secret"
URI = "https://funnel.example.com/v1/connectors/hubspot"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = HubSpotSettings(client_secret=SecretStr(SECRET), enabled=True, portal_id=62515)


def _headers(signature: str, timestamp: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}


def _signed(body: bytes, *, at: datetime = NOW, uri: str = URI) -> dict[str, str]:
    timestamp = str(int(at.timestamp() * 1000))
    signature = expected_signature(SECRET, method="POST", uri=uri, body=body, timestamp=timestamp)
    return _headers(signature, timestamp)


# --- signature v3 ------------------------------------------------------------------


def test_hubspots_own_v3_test_vector_verifies() -> None:
    headers = _headers(VECTOR["signature"], VECTOR["timestamp"])

    verified = verify_signature(
        headers,
        method=VECTOR["method"],
        uri=VECTOR["uri"],
        body=VECTOR["body"].encode(),
        client_secret=VECTOR["client_secret"],
        now=VECTOR_SENT + timedelta(minutes=4),
    )

    assert verified == VECTOR["signature"]


def test_the_listed_encoded_characters_are_decoded_before_signing() -> None:
    encoded = (
        "https://funnel.example.com/v1/connectors/hubspot%3Fa%3Ab%2Fc%40d%21%24%27%28%29%2a%2C%3b"
    )

    assert (
        signature_uri(encoded) == "https://funnel.example.com/v1/connectors/hubspot?a:b/c@d!$'()*,;"
    )


def test_other_encoded_characters_stay_encoded() -> None:
    assert (
        signature_uri("https://x.example/p?q=a%20b%26c%3D") == "https://x.example/p?q=a%20b%26c%3D"
    )


def test_a_request_to_an_encoded_uri_verifies_against_the_decoded_one() -> None:
    body = b"[]"
    decoded_headers = _signed(body, uri=URI + "?portal=1:2")

    verified = verify_signature(
        decoded_headers, method="POST", uri=URI + "?portal=1%3A2", body=body,
        client_secret=SECRET, now=NOW,
    )  # fmt: skip

    assert verified == decoded_headers[SIGNATURE_HEADER]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "signature_missing"),
        ({"X-HubSpot-Signature": "abc", "X-HubSpot-Signature-Version": "v1"}, "signature_missing"),
        ({SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "yesterday"}, "signature_malformed"),
        ({SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "9" * 16}, "signature_malformed"),
        ({SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "\uff11\uff12\uff13"}, "signature_malformed"),
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str], code: str) -> None:
    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(headers, method="POST", uri=URI, body=b"[]", client_secret=SECRET, now=NOW)

    assert refused.value.code == code
    assert refused.value.status == 401


def test_a_forged_signature_is_refused() -> None:
    headers = _signed(b"[]")
    forged = expected_signature("not-the-secret", method="POST", uri=URI, body=b"[]",
                                timestamp=headers[TIMESTAMP_HEADER])  # fmt: skip

    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(
            _headers(forged, headers[TIMESTAMP_HEADER]),
            method="POST", uri=URI, body=b"[]", client_secret=SECRET, now=NOW,
        )  # fmt: skip

    assert refused.value.code == "signature_mismatch"


@pytest.mark.parametrize(
    "age", [timedelta(minutes=5, seconds=1), timedelta(minutes=-5, seconds=-1)]
)
def test_a_timestamp_more_than_five_minutes_away_is_refused(age: timedelta) -> None:
    headers = _signed(b"[]", at=NOW - age)

    with pytest.raises(ConnectorAuthError) as refused:
        verify_signature(headers, method="POST", uri=URI, body=b"[]", client_secret=SECRET, now=NOW)

    assert refused.value.code == "timestamp_stale"


def test_a_timestamp_just_inside_five_minutes_is_accepted() -> None:
    headers = _signed(b"[]", at=NOW - timedelta(minutes=5))

    verify_signature(headers, method="POST", uri=URI, body=b"[]", client_secret=SECRET, now=NOW)


@settings(deadline=None)  # a shared CI machine may pause any example
@given(
    body=st.binary(max_size=200),
    part=st.sampled_from(["body", "uri", "method", "timestamp", "signature"]),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_tampering_is_refused(body: bytes, part: str, position: int, flip: int) -> None:
    headers = _signed(body)
    request: dict[str, Any] = {
        "body": body,
        "uri": URI,
        "method": "POST",
        "timestamp": headers[TIMESTAMP_HEADER],
        "signature": headers[SIGNATURE_HEADER],
    }
    if part == "body":
        request["body"] = _flip_byte(body, position, flip) if body else b"x"
    elif part == "timestamp":
        request["timestamp"] = str(int(request["timestamp"]) + 1 + position % 1000)
    else:
        request[part] = _flip_char(request[part], position)

    with pytest.raises(ConnectorAuthError):
        verify_signature(
            _headers(request["signature"], request["timestamp"]),
            method=request["method"], uri=request["uri"], body=request["body"],
            client_secret=SECRET, now=NOW,
        )  # fmt: skip


def _flip_byte(data: bytes, position: int, flip: int) -> bytes:
    index = position % len(data)
    return data[:index] + bytes([data[index] ^ flip]) + data[index + 1 :]


def _flip_char(text: str, position: int) -> str:
    index = position % len(text)
    replacement = "B" if text[index] != "B" else "C"
    return text[:index] + replacement + text[index + 1 :]


# --- deal events -------------------------------------------------------------------


def _webhooks(outcomes: list[Any]) -> list[DealWebhook]:
    return [outcome.webhook for outcome in outcomes if isinstance(outcome, Mapped)]


def test_the_documented_delivery_maps_each_deal_event() -> None:
    outcomes = map_deal_events(vendor_bytes("hubspot", "deal_events.json"), SETTINGS, "USD")

    opened, amount, close_date, stage, won = _webhooks(outcomes)
    assert (opened.event, opened.deal_id, opened.occurred_at) == (
        "opened",
        "hubspot:62515:1246965",
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert opened.webhook_id == "hubspot:62515:25:3816279340:1246965"
    assert (amount.event, amount.amount_cents, amount.currency) == ("updated", 1250050, "USD")
    assert (close_date.event, close_date.expected_close_date) == ("updated", date(2026, 3, 31))
    assert (stage.event, stage.stage) == ("updated", "qualifiedtobuy")
    assert (won.event, won.stage, won.occurred_at) == (
        "won",
        "closedwon",
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert {deal.deal_id for deal in _webhooks(outcomes)} == {"hubspot:62515:1246965"}
    assert outcomes[5:] == [
        Ignored("3816279480", "not_a_deal_event"),
        Ignored("3816279345", "untracked_property"),
    ]


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "eventId": 1, "subscriptionId": 2, "portalId": 62515, "appId": 3, "objectId": 42,
        "occurredAt": 1767225600000, "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0, **fields,
    }  # fmt: skip


def _map_one(event: dict[str, Any], settings: HubSpotSettings = SETTINGS) -> Any:
    (outcome,) = map_deal_events(json.dumps([event]).encode(), settings, "USD")
    return outcome


def test_a_configured_closed_lost_stage_is_lost_with_the_stage_as_reason() -> None:
    settings = HubSpotSettings(closed_lost_stage_ids=["closedlost", "98765"])

    outcome = _map_one(_event(propertyName="dealstage", propertyValue="98765"), settings)

    assert isinstance(outcome, Mapped)
    assert (outcome.webhook.event, outcome.webhook.reason) == ("lost", "98765")


def test_a_numeric_amount_is_kept_exact() -> None:
    outcome = _map_one(_event(propertyName="amount", propertyValue=1234.56))

    assert outcome.webhook.amount_cents == 123456


@settings(deadline=None)
@given(minor=st.integers(min_value=0, max_value=MAX_MINOR_UNITS))
def test_random_amounts_round_trip_exactly(minor: int) -> None:
    outcome = _map_one(
        _event(propertyName="amount", propertyValue=minor_units_to_decimal(minor, "USD"))
    )

    assert outcome.webhook.amount_cents == minor


def test_an_amount_with_fractions_of_a_cent_is_refused_precisely() -> None:
    outcome = _map_one(_event(propertyName="amount", propertyValue="99.999"))

    assert isinstance(outcome, Refused)
    assert (outcome.error.code, outcome.error.field) == ("amount_inexact", "propertyValue")


def test_amounts_of_a_portal_in_another_currency_are_refused() -> None:
    outcome = _map_one(
        _event(propertyName="amount", propertyValue="10"), HubSpotSettings(currency="EUR")
    )

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, WrongCurrency)
    assert outcome.error.code == "currency_mismatch"


def test_a_deal_switched_to_another_currency_is_refused() -> None:
    outcome = _map_one(_event(propertyName="deal_currency_code", propertyValue="EUR"))

    assert isinstance(outcome, Refused)
    assert outcome.error.code == "currency_mismatch"


def test_events_of_another_portal_are_ignored() -> None:
    assert _map_one(_event(portalId=1, propertyName="amount", propertyValue="1")) == Ignored(
        "1", "other_portal"
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(subscriptionType="deal.deletion"), "deal_deletion_not_mapped"),
        (_event(propertyName="amount", propertyValue=""), "amount_cleared"),
        (_event(propertyName="deal_currency_code", propertyValue="USD"), "currency_confirmed"),
        (_event(subscriptionType="object.creation", objectTypeId="0-1"), "not_a_deal_event"),
    ],
)
def test_what_means_nothing_to_the_funnel_is_ignored_with_a_reason(
    event: dict[str, Any], reason: str
) -> None:
    assert _map_one(event) == Ignored("1", reason)


def test_generic_object_subscriptions_for_deals_are_mapped() -> None:
    outcome = _map_one(_event(subscriptionType="object.creation", objectTypeId="0-3"))

    assert outcome.webhook.event == "opened"


def test_a_bad_event_is_refused_alone_and_the_others_are_mapped() -> None:
    body = json.dumps(
        [
            _event(eventId=7, propertyName="closedate", propertyValue="next week"),
            _event(eventId=6, propertyName="closedate", propertyValue="9" * 15),
            {"objectId": 1},
            _event(eventId=9, propertyName="dealstage", propertyValue="x" * 81),
            _event(eventId=8, propertyName="dealstage", propertyValue="closedwon"),
        ]
    ).encode()

    bad_date, far_date, unreadable, long_stage, won = map_deal_events(body, SETTINGS, "USD")

    assert isinstance(bad_date, Refused)
    assert (bad_date.source_id, bad_date.error.code) == ("7", "date_format")
    assert isinstance(far_date, Refused)
    assert far_date.error.code == "date_format"
    assert isinstance(unreadable, Refused)
    assert unreadable.source_id == "#2"
    assert unreadable.error.code == "missing"
    assert isinstance(long_stage, Refused)
    assert (long_stage.error.field, long_stage.error.code) == ("[9].stage", "string_too_long")
    assert isinstance(won, Mapped)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "json_invalid"),
        (b'{"objectId": 1}', "model_type"),
        (b"[NaN]", "json_invalid"),
    ],
)
def test_a_body_that_is_not_an_event_array_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(ConnectorPayloadError) as refused:
        map_deal_events(body, SETTINGS, "USD")

    assert refused.value.code == code
