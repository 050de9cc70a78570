"""HubSpot, Salesforce and Stripe deliveries through the whole platform, down to the figures.

The vendors' own example payloads (tests/fixtures/vendors/, sources in each README),
signed the way each vendor signs, posted to lead-intake's connector routes; metrics'
``/v1/funnel`` must move. Forged, stale and replayed deliveries are refused and change
nothing.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from funnel_common.events import DEALS_TOPIC, DealOpened, DealWon
from funnel_common.settings import CommonSettings
from lead_intake.connectors import hubspot, salesforce
from tests.helpers import eventually, parse_metric
from tests.integration.intake.conftest import IntakeFactory, events_on
from tests.platform import Platform
from tests.unit.intake.connectors.vendor_fixtures import vendor_bytes, vendor_json

HUBSPOT_SECRET = "hubspot-client-secret-for-tests-0123456789"
STRIPE_SECRET = "whsec_stripe_signing_secret_for_tests_0123"
ORGANIZATION = "00D000000000062"  # the fixture's 00D000000000062EAA, in its 15-character form
HUBSPOT_URL = "http://intake/v1/connectors/hubspot"
CONNECTORS = {
    "FUNNEL_INTAKE_HUBSPOT_ENABLED": "true",
    "FUNNEL_INTAKE_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
    "FUNNEL_INTAKE_HUBSPOT_PORTAL_ID": "62515",
    "FUNNEL_INTAKE_SALESFORCE_ENABLED": "true",
    "FUNNEL_INTAKE_SALESFORCE_ORGANIZATION_ID": ORGANIZATION,
    "FUNNEL_INTAKE_STRIPE_ENABLED": "true",
    "FUNNEL_INTAKE_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
}


@pytest.fixture(autouse=True)
def connectors_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connector on, as an operator's environment would say (read at start-up)."""
    for name, value in CONNECTORS.items():
        monkeypatch.setenv(name, value)


# --- HubSpot ---------------------------------------------------------------------------


def _hubspot(
    body: bytes, *, at: datetime | None = None, secret: str = HUBSPOT_SECRET
) -> dict[str, Any]:
    timestamp = str(int((at or datetime.now(UTC)).timestamp() * 1000))
    signature = hubspot.expected_signature(
        secret, method="POST", uri=HUBSPOT_URL, body=body, timestamp=timestamp
    )
    headers = {
        "content-type": "application/json",
        hubspot.SIGNATURE_HEADER: signature,
        hubspot.TIMESTAMP_HEADER: timestamp,
    }
    return {"content": body, "headers": headers}


async def _funnel(platform: Platform, period: str) -> dict[str, Any]:
    answer = await platform.metrics.get("/v1/funnel", params={"period": period})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


async def _revenue_becomes(
    platform: Platform, period: str, expected: dict[str, Any]
) -> dict[str, Any]:
    async def revenue() -> dict[str, Any]:
        figures: dict[str, Any] = (await _funnel(platform, period))["revenue"]
        return figures

    return await eventually(
        revenue,
        until=lambda seen: all(seen[key] == value for key, value in expected.items()),
        timeout=20,
        what=f"{period} revenue {expected}",
    )


async def test_a_hubspot_deal_moved_to_closed_won_is_won_in_the_funnel(
    platform: Platform,
) -> None:
    delivery = vendor_bytes("hubspot", "deal_events.json")
    before = (await _funnel(platform, "2026-Q1"))["revenue"]

    first = await platform.intake.post("/v1/connectors/hubspot", **_hubspot(delivery))
    # HubSpot retries (a new timestamp, so a new signature): every event is a duplicate.
    retry = await platform.intake.post(
        "/v1/connectors/hubspot", **_hubspot(delivery, at=datetime.now(UTC) - timedelta(seconds=2))
    )

    assert first.status_code == 200, first.text
    # creation, amount, closedate, two stage changes; a contact and an untracked property
    assert first.json() == {"applied": 5, "duplicate": 0, "ignored": 2}
    assert retry.json() == {"applied": 0, "duplicate": 5, "ignored": 2}
    assert (before["won"], before["won_value_cents"]) == (0, 0)
    # 12500.50 in the fixture's amount event, closed won on 2026-03-01.
    await _revenue_becomes(platform, "2026-Q1", {"won": 1, "won_value_cents": 1_250_050})
    metrics = (await platform.intake.get("/metrics")).text
    assert (
        parse_metric(metrics, "funnel_intake_connector_received_total", 'connector="hubspot"') == 2
    )
    applied = 'connector="hubspot",outcome="applied",reason=""'
    assert parse_metric(metrics, "funnel_intake_connector_events_total", applied) == 5


async def test_a_forged_stale_or_replayed_hubspot_delivery_is_refused_and_changes_nothing(
    platform: Platform, database_url: str
) -> None:
    delivery = vendor_bytes("hubspot", "deal_events.json")
    good = _hubspot(delivery)

    forged = await platform.intake.post(
        "/v1/connectors/hubspot", **_hubspot(delivery, secret="not-the-client-secret")
    )
    stale = await platform.intake.post(
        "/v1/connectors/hubspot",
        **_hubspot(delivery, at=datetime.now(UTC) - timedelta(minutes=5, seconds=5)),
    )
    tampered = await platform.intake.post(
        "/v1/connectors/hubspot",
        content=delivery.replace(b"12500.50", b"99999.99"),
        headers=good["headers"],
    )
    accepted = await platform.intake.post("/v1/connectors/hubspot", **good)
    replayed = await platform.intake.post("/v1/connectors/hubspot", **good)

    codes = {
        name: (answer.status_code, answer.json()["errors"][0]["code"])
        for name, answer in {
            "forged": forged, "stale": stale, "tampered": tampered, "replayed": replayed,
        }.items()
    }  # fmt: skip
    assert codes == {
        "forged": (401, "signature_mismatch"),
        "stale": (401, "timestamp_stale"),
        "tampered": (401, "signature_mismatch"),
        "replayed": (401, "replayed"),
    }
    assert forged.headers["content-type"] == "application/problem+json"
    assert accepted.status_code == 200
    metrics = (await platform.intake.get("/metrics")).text
    refused = parse_metric(
        metrics,
        "funnel_intake_connector_refused_total",
        'connector="hubspot",reason="signature_mismatch"',
    )
    assert refused == 2


# --- Salesforce ------------------------------------------------------------------------


SOAP = {"content-type": "text/xml; charset=utf-8", "SOAPAction": '""'}


async def test_a_salesforce_opportunity_marked_won_is_won_and_acknowledged(
    platform: Platform,
) -> None:
    message = vendor_bytes("salesforce", "outbound_opportunities.xml")

    answer = await platform.intake.post("/v1/connectors/salesforce", content=message, headers=SOAP)
    again = await platform.intake.post("/v1/connectors/salesforce", content=message, headers=SOAP)

    assert answer.status_code == 200, answer.text
    assert answer.content == salesforce.ACK
    assert answer.headers["content-type"].startswith("text/xml")
    assert again.content == salesforce.ACK  # Salesforce's redelivery: acknowledged, deduplicated
    # Won 120000.0 on 2026-03-27 and lost 1.5E7 on 2026-03-30; one opened in April.
    await _revenue_becomes(
        platform, "2026-Q1", {"won": 1, "won_value_cents": 12_000_000, "lost": 1,
                              "lost_value_cents": 1_500_000_000},
    )  # fmt: skip
    q2 = await _revenue_becomes(platform, "2026-Q2", {"won": 0})
    assert q2["open_pipeline_cents"] == 499_999


async def test_another_organisations_or_a_malformed_salesforce_message_gets_a_soap_fault(
    platform: Platform,
) -> None:
    message = vendor_bytes("salesforce", "outbound_opportunities.xml")
    forged = message.replace(b"00D000000000062EAA", b"00D000000000099AAA")
    with_entity = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'

    other_org = await platform.intake.post(
        "/v1/connectors/salesforce", content=forged, headers=SOAP
    )
    hostile = await platform.intake.post(
        "/v1/connectors/salesforce", content=with_entity, headers=SOAP
    )

    assert other_org.status_code == 401
    assert b"<faultcode>soapenv:Client</faultcode>" in other_org.content
    assert b"organization_mismatch" in other_org.content
    assert hostile.status_code == 422
    assert b"xml_forbidden" in hostile.content
    assert (await _funnel(platform, "2026-Q1"))["revenue"]["won"] == 0


# --- Stripe ----------------------------------------------------------------------------


def _stripe_event(
    event_type: str, created: datetime, quantity: int, previous: dict[str, Any] | None = None
) -> bytes:
    subscription = copy.deepcopy(vendor_json("stripe", "subscription.json"))
    subscription["items"]["data"][0]["quantity"] = quantity
    event = vendor_json("stripe", "event_envelope.json")
    event.update(
        id=f"evt_{event_type}_{quantity}", type=event_type, created=int(created.timestamp())
    )
    event["data"] = {"object": subscription}
    if previous is not None:
        event["data"]["previous_attributes"] = previous
    return json.dumps(event).encode()


def _stripe(body: bytes, *, at: int | None = None, secret: str = STRIPE_SECRET) -> dict[str, Any]:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content": body,
        "headers": {
            "content-type": "application/json",
            "Stripe-Signature": f"t={timestamp},v1={digest}",
        },
    }


def _quarter(instant: datetime) -> tuple[str, datetime]:
    """The quarter of ``instant`` (UTC, the default reporting zone) and its first moment."""
    first_month = 3 * ((instant.month - 1) // 3) + 1
    return f"{instant.year}-Q{(instant.month - 1) // 3 + 1}", datetime(
        instant.year, first_month, 1, tzinfo=UTC
    )


async def test_a_stripe_subscription_upgraded_raises_net_retention(platform: Platform) -> None:
    now = datetime.now(UTC)
    period, start = _quarter(now)
    # A customer since last quarter (2000 cents a month, the fixture's price), upgraded
    # to three seats now: this quarter's cohort expands.
    created = _stripe_event("customer.subscription.created", start - timedelta(days=10), 1)
    upgraded = _stripe_event(
        "customer.subscription.updated", now, 3, previous={"items": {"data": []}}
    )

    activation = await platform.intake.post("/v1/connectors/stripe", **_stripe(created))
    before = await eventually(
        lambda: _funnel(platform, period),
        until=lambda doc: doc["retention"]["cohort_size"] == 1,
        timeout=20,
        what="the customer in this quarter's cohort",
    )
    upgrade = await platform.intake.post("/v1/connectors/stripe", **_stripe(upgraded))
    after = await eventually(
        lambda: _funnel(platform, period),
        until=lambda doc: doc["retention"]["end_arr_cents"] == 72_000,
        timeout=20,
        what="the upgrade counted",
    )

    assert (activation.status_code, upgrade.status_code) == (200, 200)
    assert activation.json() == {"applied": 1, "duplicate": 0, "ignored": 0}
    assert before["retention"]["start_arr_cents"] == 24_000
    assert before["retention"]["net"] == 1.0
    assert after["retention"]["expansion_cents"] == 48_000
    assert after["retention"]["net"] == 3.0


async def test_a_forged_stale_or_replayed_stripe_event_is_refused(platform: Platform) -> None:
    body = _stripe_event("customer.subscription.created", datetime.now(UTC), 1)
    good = _stripe(body)

    forged = await platform.intake.post("/v1/connectors/stripe", **_stripe(body, secret="whsec_no"))
    stale = await platform.intake.post(
        "/v1/connectors/stripe", **_stripe(body, at=int(time.time()) - 301)
    )
    accepted = await platform.intake.post("/v1/connectors/stripe", **good)
    replayed = await platform.intake.post("/v1/connectors/stripe", **good)
    euros = await platform.intake.post(
        "/v1/connectors/stripe", **_stripe(body.replace(b'"usd"', b'"eur"'))
    )

    assert [a.status_code for a in (forged, stale, accepted, replayed)] == [401, 401, 200, 401]
    assert [a.json()["errors"][0]["code"] for a in (forged, stale, replayed)] == [
        "signature_mismatch", "timestamp_stale", "replayed",
    ]  # fmt: skip
    assert euros.status_code == 422
    assert euros.json()["errors"][0]["code"] == "currency_mismatch"
    metrics = (await platform.intake.get("/metrics")).text
    assert (
        parse_metric(
            metrics,
            "funnel_intake_connector_refused_total",
            'connector="stripe",reason="currency_mismatch"',
        )
        == 1
    )


# --- one delivery's refused event does not undo the others ------------------------------


async def test_a_batch_with_a_refused_event_applies_the_rest_and_answers_422(
    start_intake: IntakeFactory, topics: CommonSettings
) -> None:
    intake = await start_intake()
    events = vendor_json("hubspot", "deal_events.json")[:2]
    inexact = copy.deepcopy(events[1])
    inexact.update(eventId=1, propertyValue="10.005")  # fractions of a cent: refused
    body = json.dumps([events[0], inexact]).encode()

    answer = await intake.post("/v1/connectors/hubspot", **_hubspot(body))

    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"event": "1", "field": "propertyValue", "code": "amount_inexact",
         "message": "more decimals than USD has; refused rather than rounded"}
    ]  # fmt: skip
    (opened,) = await events_on(topics, DEALS_TOPIC, expect=1)
    assert isinstance(opened, DealOpened)
    assert opened.subject == "hubspot:62515:1246965"
    assert opened.data.fields_set == ["stage"]  # HubSpot's creation carries no amount
    assert not isinstance(opened, DealWon)


async def test_a_connector_that_is_not_enabled_answers_404(
    start_intake: IntakeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNEL_INTAKE_STRIPE_ENABLED", "false")
    intake = await start_intake()

    answer = await intake.post("/v1/connectors/stripe", content=b"{}")

    assert answer.status_code == 404
    assert answer.json()["type"] == "/problems/connector-disabled"
