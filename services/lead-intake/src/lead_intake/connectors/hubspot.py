"""HubSpot: request signature v3, and deal events from the webhooks API as our deals.

Signature v3, as HubSpot documents it ("Validating requests"): the header
``X-HubSpot-Signature-v3`` is base64(HMAC-SHA256(app client secret, method + URI + raw
body + timestamp)), the URI being the full URL HubSpot called with the characters of
:data:`URI_DECODED` percent-decoded, and ``X-HubSpot-Request-Timestamp`` (epoch ms) at
most five minutes old. The older v1/v2 signatures carry no timestamp (a captured request
replays forever) and are refused.

The webhooks API sends a JSON array of events (``subscriptionType`` ``deal.creation``,
``deal.propertyChange`` with ``propertyName``/``propertyValue``, ``deal.deletion``...),
each mapped on its own (:mod:`.delivery`):

- ``deal.creation`` -> ``opened`` (HubSpot sends no properties with it);
- ``dealstage`` -> ``won`` / ``lost`` for a configured closed stage id, else ``updated``
  with the stage;
- ``amount`` -> ``updated`` with the amount, converted exactly to minor units;
- ``closedate`` (epoch ms) -> ``updated`` with the expected close date (its UTC date);
- ``deal_currency_code`` other than the reporting currency -> refused;
- anything else (contacts, other properties, deletions, merges) -> ignored, with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.types import CurrencyCode, Label
from lead_intake.connectors.delivery import DealOutcome, Ignored, Mapped, Refused
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorPayloadError
from lead_intake.connectors.money import check_currency, decimal_to_minor_units
from lead_intake.models import DealWebhook

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE = timedelta(minutes=5)
# The webhooks API batches at most this many events in one request.
MAX_EVENTS = 100

# HubSpot's table of URL-encoded characters to decode in the request URI before signing.
URI_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_URI_ENCODED = re.compile("|".join(URI_DECODED), re.IGNORECASE)

# Deal event kinds the funnel does not map (HubSpot's webhooks API documents these).
_UNMAPPED_KINDS = frozenset(
    {"deletion", "merge", "restore", "associationchange", "privacydeletion"}
)

# The object type id HubSpot's generic ("object.*") subscriptions give deals.
DEAL_OBJECT_TYPE_ID = "0-3"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LABEL = 80


class HubSpotSettings(BaseSettings):
    """HubSpot connector settings, env prefix ``FUNNEL_INTAKE_HUBSPOT_`` (lists as JSON)."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_HUBSPOT_", extra="ignore")

    enabled: bool = Field(default=False, description="serve `POST /v1/connectors/hubspot`")
    client_secret: SecretStr = Field(
        default=SecretStr("dev-hubspot-client-secret"),
        description="the app's client secret (its Auth tab), which signs deliveries (v3)",
    )
    # HubSpot signs the URL it called, which behind a proxy or load balancer is not the
    # URL this process sees.
    target_url: str | None = Field(
        default=None,
        description="the exact Target URL configured in HubSpot (unset: the URL requested)",
    )
    # HubSpot's events name the stage, not its pipeline.
    closed_won_stage_ids: list[Label] = Field(
        default_factory=lambda: ["closedwon"],
        description="JSON list of stage ids (internal values) that mean won, in every "
        "pipeline tracked",
    )
    closed_lost_stage_ids: list[Label] = Field(
        default_factory=lambda: ["closedlost"],
        description="JSON list of stage ids that mean lost",
    )
    # A public app is installed in many accounts, all signing with one secret.
    portal_id: int | None = Field(
        default=None,
        description="your HubSpot account id: other portals' events are ignored (unset: any)",
    )
    # HubSpot's amount events do not say which currency they are in.
    currency: CurrencyCode | None = Field(
        default=None,
        description="the account's company currency, if not the reporting currency (its "
        "amounts are then refused)",
    )


def signature_uri(uri: str) -> str:
    """``uri`` with HubSpot's listed percent-encoded characters decoded (any hex case)."""
    return _URI_ENCODED.sub(lambda match: URI_DECODED[match.group(0).upper()], uri)


def expected_signature(
    client_secret: str, *, method: str, uri: str, body: bytes, timestamp: str
) -> str:
    """The v3 signature HubSpot sends for this request."""
    message = (method.upper() + signature_uri(uri)).encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_signature(
    headers: Mapping[str, str],
    *,
    method: str,
    uri: str,
    body: bytes,
    client_secret: str,
    now: datetime,
) -> str:
    """The verified signature (a key for replay detection), or :class:`ConnectorAuthError`.

    ``headers`` must look names up case-insensitively (Starlette's do); ``uri`` is the full
    URL HubSpot called (the configured target URL with the request's query string).
    """
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise ConnectorAuthError(
            f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required (v1/v2 are refused)",
            code="signature_missing",
        )
    # 13 digits last until the year 2286; more would overflow a datetime.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 13:
        raise ConnectorAuthError(
            "the timestamp is not epoch milliseconds", code="signature_malformed"
        )
    sent = _EPOCH + timedelta(milliseconds=int(timestamp))
    if abs(now - sent) > MAX_AGE:
        raise ConnectorAuthError(
            "the request is more than five minutes old", code="timestamp_stale"
        )
    expected = expected_signature(
        client_secret, method=method, uri=uri, body=body, timestamp=timestamp
    )
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise ConnectorAuthError("the signature does not match", code="signature_mismatch")
    return expected


class HubSpotEvent(BaseModel):
    """One event of a webhooks API delivery: only the fields we read."""

    # Strict: a JSON boolean is not an id, nor a string a number.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    event_id: int = Field(alias="eventId")
    subscription_id: int | None = Field(default=None, alias="subscriptionId")
    portal_id: int = Field(alias="portalId")
    subscription_type: str = Field(alias="subscriptionType")
    object_type_id: str | None = Field(default=None, alias="objectTypeId")
    object_id: int = Field(alias="objectId")
    occurred_at_ms: int = Field(alias="occurredAt", ge=0, le=4_102_444_800_000)
    property_name: str | None = Field(default=None, alias="propertyName")
    property_value: str | int | Decimal | None = Field(default=None, alias="propertyValue")
    attempt_number: int | None = Field(default=None, alias="attemptNumber")

    @property
    def occurred_at(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.occurred_at_ms)

    @property
    def kind(self) -> str | None:
        """``creation``, ``propertyChange``... for a deal event, else None."""
        family, _, kind = self.subscription_type.partition(".")
        if family == "deal" or (family == "object" and self.object_type_id == DEAL_OBJECT_TYPE_ID):
            return kind
        return None

    @property
    def deal_id(self) -> str:
        return f"hubspot:{self.portal_id}:{self.object_id}"

    @property
    def webhook_id(self) -> str:
        # Retries repeat every one of these; HubSpot does not promise eventId alone is
        # unique, and one CRM change may notify several subscriptions.
        key = f"hubspot:{self.portal_id}:{self.subscription_id}:{self.event_id}:{self.object_id}"
        if len(key) <= _MAX_LABEL:
            return key
        return "hubspot:" + hashlib.sha256(key.encode()).hexdigest()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_events(body: bytes) -> list[Any]:
    """The delivery's JSON array, numbers kept exact; :class:`ConnectorPayloadError` if
    it is not one."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:
        raise ConnectorPayloadError("body", "the body is not valid JSON", "json_invalid") from error
    if not isinstance(data, list):
        raise ConnectorPayloadError(
            "body",
            "expected the webhooks API's JSON array of events (a workflow's single-object "
            "webhook is not supported)",
            "model_type",
        )
    if len(data) > MAX_EVENTS:
        raise ConnectorPayloadError(
            "body", f"HubSpot sends at most {MAX_EVENTS} events per request", "too_many_events"
        )
    return data


def map_deal_events(
    body: bytes, settings: HubSpotSettings, reporting_currency: str
) -> list[DealOutcome]:
    """Each event of a verified webhooks API delivery, mapped, ignored or refused."""
    outcomes: list[DealOutcome] = []
    for index, raw in enumerate(parse_events(body)):
        source_id = f"#{index}"
        try:
            event = HubSpotEvent.model_validate(raw)
            source_id = str(event.event_id)
            outcomes.append(_map_event(event, source_id, settings, reporting_currency))
        except ValidationError as error:
            outcomes.append(Refused(source_id, _payload_error(f"[{index}]", error)))
        except ConnectorPayloadError as error:
            outcomes.append(Refused(source_id, error))
    return outcomes


def _map_event(
    event: HubSpotEvent, source_id: str, settings: HubSpotSettings, reporting_currency: str
) -> Mapped[DealWebhook] | Ignored:
    kind = event.kind
    if kind is None:
        return Ignored(source_id, "not_a_deal_event")
    if settings.portal_id is not None and event.portal_id != settings.portal_id:
        return Ignored(source_id, "other_portal")
    common: dict[str, Any] = {
        "webhook_id": event.webhook_id,
        "occurred_at": event.occurred_at,
        "deal_id": event.deal_id,
    }
    if kind == "creation":
        return Mapped(source_id, _deal(source_id, {**common, "event": "opened"}))
    if kind != "propertyChange":
        # The reason is a metric label: HubSpot's known kinds by name, any other as one.
        known = kind.lower() in _UNMAPPED_KINDS
        return Ignored(
            source_id, f"deal_{kind.lower()}_not_mapped" if known else "deal_other_not_mapped"
        )
    name = event.property_name
    value = "" if event.property_value is None else str(event.property_value).strip()
    if name not in ("dealstage", "amount", "closedate", "deal_currency_code"):
        return Ignored(source_id, "untracked_property")
    if not value:
        # A cleared property: our webhooks have no way to say "unknown again".
        return Ignored(source_id, f"{name}_cleared")
    fields: dict[str, Any]
    if name == "deal_currency_code":
        check_currency("propertyValue", value, reporting_currency)
        return Ignored(source_id, "currency_confirmed")
    if name == "dealstage" and value in settings.closed_won_stage_ids:
        fields = {"event": "won", "stage": value}
    elif name == "dealstage" and value in settings.closed_lost_stage_ids:
        # HubSpot's stage change carries no loss reason; the stage id is a bounded label.
        fields = {"event": "lost", "stage": value, "reason": value}
    elif name == "dealstage":
        fields = {"event": "updated", "stage": value}
    elif name == "amount":
        portal_currency = settings.currency or reporting_currency
        currency = check_currency("currency", portal_currency, reporting_currency)
        amount = decimal_to_minor_units("propertyValue", value, currency)
        fields = {"event": "updated", "amount_cents": amount, "currency": currency}
    else:
        fields = {"event": "updated", "expected_close_date": _epoch_ms_date("propertyValue", value)}
    return Mapped(source_id, _deal(source_id, {**common, **fields}))


def _deal(source_id: str, fields: dict[str, Any]) -> DealWebhook:
    try:
        return DealWebhook.model_validate(fields)
    except ValidationError as error:
        raise _payload_error(f"[{source_id}]", error) from error


def _epoch_ms_date(field: str, value: str) -> date:
    # HubSpot date and datetime properties are epoch milliseconds; a date-only value is
    # midnight UTC, so the UTC date is the date the user picked.
    if not value.isascii() or not value.isdigit() or len(value) > 14:
        raise ConnectorPayloadError(field, "closedate is not epoch milliseconds", "date_format")
    return (_EPOCH + timedelta(milliseconds=int(value))).date()


def _payload_error(prefix: str, error: ValidationError) -> ConnectorPayloadError:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return ConnectorPayloadError(f"{prefix}.{location}", first["msg"], first["type"])
