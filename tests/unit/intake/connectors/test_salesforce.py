"""Salesforce: Outbound Messages parsed safely, checked against the organisation id, mapped
onto deal webhooks, and acknowledged the way Salesforce requires."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime

import defusedxml.ElementTree as SafeElementTree
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_intake.connectors.delivery import DealOutcome, Ignored, Mapped, Refused
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError, WrongCurrency
from lead_intake.connectors.salesforce import (
    ACK,
    OUTBOUND_NS,
    SOAP_ENVELOPE_NS,
    SalesforceSettings,
    check_organization,
    map_opportunities,
    parse_outbound_message,
    salesforce_id_15,
    salesforce_id_18,
    soap_fault,
)
from tests.unit.intake.connectors.vendor_fixtures import vendor_bytes

MESSAGE = vendor_bytes("salesforce", "outbound_opportunities.xml")
ORG_15 = "00D000000000062"
ORG_18 = "00D000000000062EAA"
SETTINGS = SalesforceSettings(enabled=True, organization_id=ORG_18)


def _envelope(fields: str, *, sobject_type: str = "sf:Opportunity", org: str = ORG_18) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5e000000CaRkAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <Notification>
    <Id>04l5e00000Gx7QzAAJ</Id>
    <sObject xsi:type="{sobject_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0065e00000AbCdEAAV</sf:Id>
     {fields}
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


OPEN = (
    "<sf:IsClosed>false</sf:IsClosed><sf:IsWon>false</sf:IsWon>"
    "<sf:LastModifiedDate>2026-03-27T16:40:02.000Z</sf:LastModifiedDate>"
)


def _map_one(fields: str, settings: SalesforceSettings = SETTINGS) -> DealOutcome:
    (outcome,) = map_opportunities(parse_outbound_message(_envelope(fields)), settings, "USD")
    return outcome


# --- organisation ids ----------------------------------------------------------------


def _checksum_oracle(base: str) -> str:
    # Written from Salesforce's description: for each 5-character chunk, a 5-bit number
    # whose bit i is set when character i is an upper-case letter, then A-Z0-5 indexed.
    alphabet = string.ascii_uppercase + "012345"
    return "".join(
        alphabet[int("".join("1" if c.isupper() else "0" for c in reversed(base[i : i + 5])), 2)]
        for i in (0, 5, 10)
    )


@pytest.mark.parametrize(
    ("short", "long"),
    [
        (ORG_15, ORG_18),
        ("04l5e00000Gx7Qz", "04l5e00000Gx7QzAAJ"),
        ("AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAA555"),
    ],
)
def test_the_18_character_form_adds_the_case_checksum(short: str, long: str) -> None:
    assert salesforce_id_18(short) == long
    assert salesforce_id_15(long) == short
    assert salesforce_id_15(long[:15] + long[15:].lower()) == short  # the suffix ignores case


@settings(deadline=None)  # a shared CI machine may pause any example
@given(st.text(alphabet=string.ascii_letters + string.digits, min_size=15, max_size=15))
def test_the_checksum_matches_an_independent_oracle(base: str) -> None:
    assert salesforce_id_18(base) == base + _checksum_oracle(base)


def test_a_wrong_checksum_is_not_an_id() -> None:
    assert salesforce_id_15("00D000000000062EAB") is None
    assert salesforce_id_15("00D00000000006") is None
    assert salesforce_id_15("00D00000000006É") is None


@pytest.mark.parametrize("configured", [ORG_15, ORG_18, ORG_15 + "eaa"])
def test_the_configured_org_id_matches_in_its_15_or_18_character_form(configured: str) -> None:
    assert check_organization(parse_outbound_message(MESSAGE), configured) == ORG_18


@pytest.mark.parametrize(
    ("configured", "code"),
    [
        ("00D000000000063", "organization_mismatch"),
        ("00d000000000062", "organization_mismatch"),  # ids are case-sensitive
        (None, "organization_not_configured"),
        ("not an id", "organization_not_configured"),
    ],
)
def test_another_organisation_is_refused(configured: str | None, code: str) -> None:
    with pytest.raises(ConnectorAuthError) as refused:
        check_organization(parse_outbound_message(MESSAGE), configured)

    assert refused.value.code == code
    assert refused.value.status == 401


@settings(deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits, min_size=15, max_size=15))
def test_any_other_organisation_is_refused(other: str) -> None:
    message = parse_outbound_message(_envelope(OPEN, org=salesforce_id_18(other) or other))

    if other == ORG_15:
        assert check_organization(message, ORG_18) == ORG_18
    else:
        with pytest.raises(ConnectorAuthError):
            check_organization(message, ORG_18)


def test_mapping_refuses_another_organisations_message() -> None:
    message = parse_outbound_message(_envelope(OPEN, org="00D000000000063"))

    with pytest.raises(ConnectorAuthError):
        map_opportunities(message, SETTINGS, "USD")


# --- parsing -------------------------------------------------------------------------


def test_the_documented_envelope_parses() -> None:
    message = parse_outbound_message(MESSAGE)

    assert (message.organization_id, message.action_id) == (ORG_18, "04k5e000000CaRkAAK")
    assert [n.id for n in message.notifications] == [
        "04l5e00000Gx7QzAAJ",
        "04l5e00000Gx7R0AAJ",
        "04l5e00000Gx7R1AAJ",
    ]
    assert message.notifications[0].fields["StageName"] == "Closed Won"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&lol2;</soapenv:Envelope>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&xxe;</soapenv:Envelope>"""
BARE_DTD = b"""<?xml version="1.0"?><!DOCTYPE soapenv:Envelope>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>"""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (BILLION_LAUGHS, "xml_forbidden"),
        (EXTERNAL_ENTITY, "xml_forbidden"),
        (BARE_DTD, "xml_forbidden"),
        (b"<soapenv:Envelope", "xml_invalid"),
        (b"{}", "xml_invalid"),
        (b'<a xmlns="urn:x"><notifications/></a>', "soap_invalid"),
        (
            f'<e:Envelope xmlns:e="{SOAP_ENVELOPE_NS}"><e:Body>'
            f'<notifications xmlns="{OUTBOUND_NS}"/></e:Body></e:Envelope>'.encode(),
            "missing",
        ),
    ],
)
def test_unsafe_or_foreign_xml_is_refused_before_anything_is_expanded(
    body: bytes, code: str
) -> None:
    with pytest.raises(ConnectorPayloadError) as refused:
        parse_outbound_message(body)

    assert refused.value.code == code


# --- mapping -------------------------------------------------------------------------


def test_the_documented_message_maps_won_lost_and_opened() -> None:
    outcomes = map_opportunities(parse_outbound_message(MESSAGE), SETTINGS, "USD")

    won, lost, opened = (outcome.webhook for outcome in outcomes if isinstance(outcome, Mapped))
    assert (won.event, won.deal_id, won.amount_cents, won.currency, won.closed_on) == (
        "won",
        "salesforce:0065e00000AbCdEAAV",
        12000000,
        "USD",
        date(2026, 3, 27),
    )
    assert won.webhook_id == f"salesforce:{ORG_18}:04l5e00000Gx7QzAAJ"
    assert won.occurred_at == datetime(2026, 3, 27, 16, 40, 2, tzinfo=UTC)
    assert (lost.event, lost.reason, lost.amount_cents, lost.closed_on) == (
        "lost",
        "Closed Lost",
        1500000000,
        date(2026, 3, 30),
    )
    assert (opened.event, opened.stage, opened.amount_cents, opened.expected_close_date) == (
        "opened",
        "Prospecting",
        499999,
        date(2026, 6, 30),
    )


def test_a_later_change_of_an_open_opportunity_is_an_update() -> None:
    outcome = _map_one(OPEN + "<sf:CreatedDate>2026-01-05T09:12:44.000Z</sf:CreatedDate>")

    assert isinstance(outcome, Mapped)
    assert outcome.webhook.event == "updated"


def test_without_created_date_an_open_opportunity_is_an_update() -> None:
    outcome = _map_one(OPEN)

    assert isinstance(outcome, Mapped)
    assert outcome.webhook.event == "updated"


def test_the_configured_loss_reason_field_gives_the_reason() -> None:
    fields = (
        "<sf:IsClosed>true</sf:IsClosed><sf:IsWon>false</sf:IsWon>"
        "<sf:LastModifiedDate>2026-03-27T16:40:02.000Z</sf:LastModifiedDate>"
        "<sf:StageName>Closed Lost</sf:StageName><sf:Loss_Reason__c>Price</sf:Loss_Reason__c>"
    )

    outcome = _map_one(
        fields, SalesforceSettings(organization_id=ORG_15, loss_reason_field="Loss_Reason__c")
    )

    assert isinstance(outcome, Mapped)
    assert outcome.webhook.reason == "Price"


def test_a_nil_amount_leaves_the_amount_unknown() -> None:
    outcome = _map_one(OPEN + '<sf:Amount xsi:nil="true"/>')

    assert isinstance(outcome, Mapped)
    assert outcome.webhook.amount_cents is None


@pytest.mark.parametrize(
    ("fields", "settings"),
    [
        (
            OPEN + "<sf:Amount>10.0</sf:Amount><sf:CurrencyIsoCode>EUR</sf:CurrencyIsoCode>",
            SETTINGS,
        ),
        (
            OPEN + "<sf:Amount>10.0</sf:Amount>",
            SalesforceSettings(organization_id=ORG_18, currency="GBP"),
        ),
    ],
)
def test_an_amount_in_another_currency_is_refused(
    fields: str, settings: SalesforceSettings
) -> None:
    outcome = _map_one(fields, settings)

    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, WrongCurrency)


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        (
            "<sf:IsClosed>false</sf:IsClosed><sf:IsWon>false</sf:IsWon>",
            "sObject.LastModifiedDate",
            "missing",
        ),
        (OPEN.replace("<sf:IsWon>false</sf:IsWon>", ""), "sObject.IsWon", "missing"),
        (OPEN + "<sf:Amount>10.005</sf:Amount>", "sObject.Amount", "amount_inexact"),
        (
            OPEN + "<sf:CloseDate>soon</sf:CloseDate>",
            "sObject.CloseDate",
            "date_from_datetime_parsing",
        ),
        (OPEN.replace(".000Z", ""), "sObject.LastModifiedDate", "timezone_aware"),
    ],
)
def test_an_unusable_opportunity_is_refused_naming_the_field(
    fields: str, field: str, code: str
) -> None:
    outcome = _map_one(fields)

    assert isinstance(outcome, Refused)
    assert (outcome.error.field, outcome.error.code) == (field, code)
    assert outcome.source_id == "04l5e00000Gx7QzAAJ"


def test_notifications_of_other_objects_are_ignored() -> None:
    body = _envelope(OPEN, sobject_type="sf:Account")

    outcomes = map_opportunities(parse_outbound_message(body), SETTINGS, "USD")

    assert outcomes == [Ignored("04l5e00000Gx7QzAAJ", "not_an_opportunity")]


# --- answers -------------------------------------------------------------------------


def test_the_ack_is_the_documented_notifications_response() -> None:
    root = SafeElementTree.fromstring(ACK)

    ack = root.find(
        f"{{{SOAP_ENVELOPE_NS}}}Body/{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack"
    )
    assert ack is not None
    assert ack.text == "true"


def test_a_fault_names_the_reason_escaped() -> None:
    root = SafeElementTree.fromstring(soap_fault("currency_mismatch", "EUR is not <USD> & co"))

    fault = root.find(f"{{{SOAP_ENVELOPE_NS}}}Body/{{{SOAP_ENVELOPE_NS}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.findtext("faultstring") == "currency_mismatch: EUR is not <USD> & co"
