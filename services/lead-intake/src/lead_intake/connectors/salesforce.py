"""Salesforce: Outbound Messages for Opportunity, acknowledged the way Salesforce requires.

An Outbound Message is a SOAP 1.1 request (``notifications`` in the
``http://soap.sforce.com/2005/09/outbound`` namespace) with ``OrganizationId``,
``ActionId``, ``SessionId``, ``EnterpriseUrl``, ``PartnerUrl`` and up to 100
``Notification`` elements, each an ``Id`` (the notification's, stable across retries) and
an ``sObject`` of ``xsi:type="sf:Opportunity"`` carrying the fields chosen when the
message was set up. Salesforce retries until it reads ``<Ack>true</Ack>`` (for 24 hours).

It is not signed. Salesforce's security advice is to check that each message carries your
organisation id, to accept only Salesforce's IP ranges, to use TLS, and where the proxy
can, to require Salesforce's client certificate. Here: the organisation id, in its 15- or
18-character form; the rest is the proxy's job (docs/connectors.md).

The body is parsed by defusedxml: a DTD, an entity or an external reference is refused
before anything is expanded.

Mapping (each notification on its own, :mod:`.delivery`):

- ``IsClosed`` and ``IsWon`` -> ``won``; ``IsClosed`` and not ``IsWon`` -> ``lost``
  (reason: the configured loss-reason field, else ``StageName``), closed on ``CloseDate``;
- otherwise ``opened`` when ``CreatedDate`` equals ``LastModifiedDate`` (the message was
  queued by the insert itself), else ``updated``: pure code cannot know whether we saw
  the opportunity before, and under order-independent deal state an ``updated`` for an
  unknown deal is recorded anyway. Without ``CreatedDate`` in the message, ``updated``.
- ``occurred_at`` is ``LastModifiedDate``; the webhook id
  ``salesforce:<organisation id>:<notification Id>``; the deal id
  ``salesforce:<Opportunity Id>``.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.types import CurrencyCode
from lead_intake.connectors.delivery import DealOutcome, Ignored, Mapped, Refused
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError
from lead_intake.connectors.money import check_currency, decimal_to_minor_units
from lead_intake.models import DealWebhook

SOAP_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# The answer Salesforce needs to stop retrying: notificationsResponse/Ack = true.
ACK_MEDIA_TYPE = "text/xml; charset=utf-8"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
).encode()

_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class SalesforceSettings(BaseSettings):
    """Salesforce connector settings, env prefix ``FUNNEL_INTAKE_SALESFORCE_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_SALESFORCE_", extra="ignore")

    enabled: bool = Field(default=False, description="serve `POST /v1/connectors/salesforce`")
    organization_id: str | None = Field(
        default=None,
        description="your org id (Setup, Company Information), 15 or 18 characters; "
        "required when enabled",
    )
    # Single-currency orgs send no CurrencyIsoCode.
    currency: CurrencyCode | None = Field(
        default=None,
        description="the org's currency when opportunities carry none, if not the "
        "reporting currency (their amounts are then refused)",
    )
    loss_reason_field: str | None = Field(
        default=None,
        description="API name of an Opportunity field holding why a deal was lost (e.g. "
        "`Loss_Reason__c`); unset: the `StageName`",
    )

    @model_validator(mode="after")
    def _organization_when_enabled(self) -> SalesforceSettings:
        if self.enabled and salesforce_id_15(self.organization_id or "") is None:
            raise ValueError(
                "FUNNEL_INTAKE_SALESFORCE_ORGANIZATION_ID must be a 15- or 18-character "
                "organisation id when the connector is enabled"
            )
        return self


def salesforce_id_15(value: str) -> str | None:
    """The case-sensitive 15-character form of a Salesforce id, or None if ``value`` is
    not one (an 18-character id whose 3-character checksum does not match is not)."""
    if len(value) == 15 and value.isascii() and value.isalnum():
        return value
    if len(value) != 18 or not value.isascii() or not value.isalnum():
        return None
    base = value[:15]
    if _id_suffix(base) != value[15:].upper():
        return None
    return base


def _id_suffix(base: str) -> str:
    # Each 5-character chunk gives one character: bit i set when character i is A-Z.
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, char in enumerate(base[start : start + 5]) if "A" <= char <= "Z")
        suffix += _ID_SUFFIX_ALPHABET[bits]
    return suffix


def salesforce_id_18(value: str) -> str | None:
    """The 18-character form of a Salesforce id (15 or 18 characters), or None."""
    base = salesforce_id_15(value)
    return None if base is None else base + _id_suffix(base)


class Notification(BaseModel):
    """One ``Notification``: its id, the sObject's type and its fields as text (None for
    ``xsi:nil``)."""

    id: str
    sobject_type: str | None
    fields: dict[str, str | None]


class OutboundMessage(BaseModel):
    """The ``notifications`` element: only what we read."""

    organization_id: str
    action_id: str | None
    notifications: list[Notification]


class Opportunity(BaseModel):
    """The Opportunity fields we read; every one optional but ``Id``, as the admin picks
    them when setting up the message."""

    model_config = ConfigDict(extra="ignore")

    Id: str = Field(min_length=15, max_length=18)
    StageName: str | None = None
    Amount: str | None = None
    CurrencyIsoCode: str | None = None
    CloseDate: date | None = None
    IsWon: bool | None = None
    IsClosed: bool | None = None
    CreatedDate: AwareDatetime | None = None
    LastModifiedDate: AwareDatetime | None = None


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The message's envelope and notifications, or :class:`ConnectorPayloadError`."""
    try:
        root = SafeElementTree.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as error:
        raise ConnectorPayloadError(
            "body", "DTDs, entities and external references are refused", "xml_forbidden"
        ) from error
    except SafeElementTree.ParseError as error:
        raise ConnectorPayloadError(
            "body", "the body is not well-formed XML", "xml_invalid"
        ) from error
    notifications = root.find(f"{{{SOAP_ENVELOPE_NS}}}Body/{{{OUTBOUND_NS}}}notifications")
    if root.tag != f"{{{SOAP_ENVELOPE_NS}}}Envelope" or notifications is None:
        raise ConnectorPayloadError(
            "body",
            "not a SOAP envelope holding an Outbound Message (notifications)",
            "soap_invalid",
        )
    organization_id = _text(notifications, "OrganizationId")
    if not organization_id:
        raise ConnectorPayloadError(
            "OrganizationId", "the message names no organisation", "missing"
        )
    parsed = []
    for index, notification in enumerate(notifications.findall(f"{{{OUTBOUND_NS}}}Notification")):
        sobject = notification.find(f"{{{OUTBOUND_NS}}}sObject")
        fields: dict[str, str | None] = {}
        sobject_type = None
        if sobject is not None:
            sobject_type = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2] or None
            for element in sobject:
                fields[_local_name(element)] = None if _is_nil(element) else (element.text or "")
        notification_id = _text(notification, "Id") or f"#{index}"
        parsed.append(Notification(id=notification_id, sobject_type=sobject_type, fields=fields))
    return OutboundMessage(
        organization_id=organization_id,
        action_id=_text(notifications, "ActionId"),
        notifications=parsed,
    )


def _text(parent: Element, name: str) -> str | None:
    element = parent.find(f"{{{OUTBOUND_NS}}}{name}")
    if element is None or _is_nil(element) or element.text is None:
        return None
    return element.text.strip()


def _is_nil(element: Element) -> bool:
    return element.get(f"{{{XSI_NS}}}nil") in ("true", "1")


def _local_name(element: Element) -> str:
    return element.tag.rpartition("}")[2]


def check_organization(message: OutboundMessage, organization_id: str | None) -> str:
    """The message's organisation id in its 18-character form if it is the configured
    one, or :class:`ConnectorAuthError`."""
    expected = salesforce_id_15(organization_id or "")
    if expected is None:
        raise ConnectorAuthError(
            "no valid organisation id is configured", code="organization_not_configured"
        )
    received = salesforce_id_15(message.organization_id)
    if received != expected:
        raise ConnectorAuthError(
            "the message is not from the configured organisation", code="organization_mismatch"
        )
    return expected + _id_suffix(expected)


def map_opportunities(
    message: OutboundMessage, settings: SalesforceSettings, reporting_currency: str
) -> list[DealOutcome]:
    """Each notification of the message, mapped, ignored or refused, once the message is
    shown to be from the configured organisation (the only credential it carries):
    :class:`ConnectorAuthError` otherwise."""
    organization = check_organization(message, settings.organization_id)
    outcomes: list[DealOutcome] = []
    for notification in message.notifications:
        if notification.sobject_type != "Opportunity":
            outcomes.append(Ignored(notification.id, "not_an_opportunity"))
            continue
        webhook_id = f"salesforce:{organization}:{notification.id}"
        try:
            webhook = _map_opportunity(
                webhook_id, notification.fields, settings, reporting_currency
            )
            outcomes.append(Mapped(notification.id, webhook))
        except ConnectorPayloadError as error:
            outcomes.append(Refused(notification.id, error))
    return outcomes


def _map_opportunity(
    webhook_id: str,
    fields: dict[str, str | None],
    settings: SalesforceSettings,
    reporting_currency: str,
) -> DealWebhook:
    try:
        opportunity = Opportunity.model_validate(fields)
    except ValidationError as error:
        raise _payload_error("sObject", error) from error
    for required in ("LastModifiedDate", "IsClosed", "IsWon"):
        if getattr(opportunity, required) is None:
            raise ConnectorPayloadError(
                f"sObject.{required}", f"add {required} to the Outbound Message's fields", "missing"
            )
    deal: dict[str, Any] = {
        "webhook_id": webhook_id,
        "occurred_at": opportunity.LastModifiedDate,
        "deal_id": f"salesforce:{salesforce_id_18(opportunity.Id) or opportunity.Id}",
        "stage": opportunity.StageName or None,
    }
    if opportunity.Amount:
        currency = check_currency(
            "sObject.CurrencyIsoCode",
            opportunity.CurrencyIsoCode or settings.currency or reporting_currency,
            reporting_currency,
        )
        deal["amount_cents"] = decimal_to_minor_units(
            "sObject.Amount", opportunity.Amount, currency
        )
        deal["currency"] = currency
    if opportunity.IsClosed:
        deal["closed_on"] = opportunity.CloseDate
        if opportunity.IsWon:
            deal["event"] = "won"
        else:
            deal["event"] = "lost"
            deal["reason"] = _loss_reason(fields, opportunity, settings)
    else:
        deal["expected_close_date"] = opportunity.CloseDate
        created = opportunity.CreatedDate
        deal["event"] = "opened" if created == opportunity.LastModifiedDate else "updated"
    try:
        return DealWebhook.model_validate(deal)
    except ValidationError as error:
        raise _payload_error("sObject", error) from error


def _loss_reason(
    fields: dict[str, str | None], opportunity: Opportunity, settings: SalesforceSettings
) -> str:
    # A reason is a label (at most 80 characters, also in metrics): a longer free text
    # is cut, not refused, as the deal's outcome matters more than its wording.
    configured = fields.get(settings.loss_reason_field) if settings.loss_reason_field else None
    for reason in (configured, opportunity.StageName):
        if reason and reason.strip():
            return reason.strip()[:80]
    return "closed_lost"


def soap_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 ``Client`` fault naming why a message was refused.

    Salesforce documents no fault format for Outbound Messages: it retries any answer
    that is not an Ack. A fault's ``faultstring`` is what an admin reads in Setup ->
    Outbound Message delivery status. SOAP 1.1 over HTTP sends faults with status 500.
    """
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE_NS}">'
        "<soapenv:Body><soapenv:Fault>"
        "<faultcode>soapenv:Client</faultcode>"
        f"<faultstring>{escape(f'{code}: {message}')}</faultstring>"
        "</soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def _payload_error(prefix: str, error: ValidationError) -> ConnectorPayloadError:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return ConnectorPayloadError(f"{prefix}.{location}", first["msg"], first["type"])
