"""Connector routes: HubSpot, Salesforce and Stripe deliveries, verified, mapped, applied.

Each route checks the vendor's own credential (``connectors/``, pure), refuses a replayed
signature for as long as it is valid, maps the vendor's events onto our deal and account
webhooks and applies each mapped one through the same path as our signed webhooks
(``deliveries.py``: deduplicated by the vendor's ids, order-independent). One event's
refusal does not undo the others (each is applied in a savepoint); the delivery is then
answered 422 (Salesforce: a SOAP fault) naming the refused events, and the vendor's
retry finds the applied ones already there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from funnel_common.http import ProblemResponse, problem, problem_responses
from funnel_common.service import Transaction
from lead_intake import deliveries, store
from lead_intake.connectors import hubspot, salesforce, stripe
from lead_intake.connectors.delivery import Ignored, Mapped, Refused
from lead_intake.connectors.errors import ConnectorAuthError, ConnectorError
from lead_intake.deliveries import DeliveryRefused
from lead_intake.models import AccountWebhook, DealWebhook
from lead_intake.settings import IntakeSettings
from lead_intake.telemetry import IntakeMetrics

PREFIX = "/v1/connectors/"
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ConnectorAccepted(BaseModel):
    """Every event of the delivery was applied, a duplicate, or means nothing here."""

    applied: int
    duplicate: int
    ignored: int


class ConnectorDisabled(ConnectorError):
    status = 404
    slug = "connector-disabled"
    title = "This connector is not enabled"

    def __init__(self) -> None:
        super().__init__("this connector is not enabled here", code="disabled")


def _label(reason: str) -> str:
    # Reasons and codes are the connectors' fixed names (and pydantic's error types); the
    # pattern is a second guard, so a label can never carry a sender's free text.
    return reason if _LABEL.fullmatch(reason) else "other"


@dataclass
class Tally:
    """What happened to a delivery's events."""

    applied: int = 0
    duplicate: int = 0
    ignored: int = 0
    refused: list[tuple[str, ConnectorError | DeliveryRefused]] = field(default_factory=list)

    def accepted(self) -> ConnectorAccepted:
        return ConnectorAccepted(applied=self.applied, duplicate=self.duplicate,
                                 ignored=self.ignored)  # fmt: skip

    def errors(self) -> list[dict[str, str]]:
        return [
            {"event": source_id, "field": error.field or "body", "message": error.message,
             "code": error.code}
            for source_id, error in self.refused
        ]  # fmt: skip


class Connector:
    """One connector's counters and the application of its mapped events."""

    def __init__(self, name: str, settings: IntakeSettings, metrics: IntakeMetrics) -> None:
        self.name = name
        self._metrics = metrics
        self._currency = settings.common.reporting_currency

    def received(self) -> None:
        self._metrics.connector_received.labels(self.name).inc()

    def refused(self, code: str) -> None:
        self._metrics.connector_refused.labels(self.name, _label(code)).inc()

    async def apply(
        self,
        connection: asyncpg.Connection,
        outcomes: Sequence[Mapped[DealWebhook] | Mapped[AccountWebhook] | Ignored | Refused],
    ) -> Tally:
        """Applies the mapped events, each in a savepoint; counts every outcome."""
        tally = Tally()
        now = datetime.now(UTC)
        for outcome in outcomes:
            if isinstance(outcome, Ignored):
                tally.ignored += 1
                self._count("ignored", outcome.reason)
                continue
            if isinstance(outcome, Refused):
                tally.refused.append((outcome.source_id, outcome.error))
                self.refused(outcome.error.code)
                continue
            try:
                async with connection.transaction():
                    applied = await self._apply_one(connection, outcome.webhook, now)
            except DeliveryRefused as refused:
                tally.refused.append((outcome.source_id, refused))
                self.refused(refused.code)
                continue
            if applied.status == "duplicate":
                tally.duplicate += 1
            else:
                tally.applied += 1
            self._count(applied.status, "")
        return tally

    async def _apply_one(
        self, connection: asyncpg.Connection, webhook: DealWebhook | AccountWebhook, now: datetime
    ) -> deliveries.Applied:
        if isinstance(webhook, DealWebhook):
            return await deliveries.apply_deal(
                connection, self.name, webhook, reporting_currency=self._currency, now=now
            )
        return await deliveries.apply_account(
            connection, self.name, webhook, reporting_currency=self._currency, now=now
        )

    def _count(self, outcome: str, reason: str) -> None:
        self._metrics.connector_events.labels(
            self.name, outcome, _label(reason) if reason else ""
        ).inc()


async def _refuse_replay(
    connection: asyncpg.Connection, connector: Connector, digest: str, valid_until: datetime
) -> None:
    await store.forget_expired_signatures(connection)
    if not await store.remember_signatures(
        connection, [(f"{connector.name}:{digest}", valid_until)]
    ):
        raise ConnectorAuthError("this signature was already used", code="replayed")


def _problem(error: ConnectorError) -> ProblemResponse:
    return problem(
        error.status,
        error.slug,
        error.title,
        detail=error.message,
        errors=[{"field": error.field or "body", "message": error.message, "code": error.code}],
    )


def _refused_events(tally: Tally) -> ProblemResponse:
    return problem(
        422,
        "connector-payload",
        "Some of the delivery's events cannot be mapped",
        detail=f"{len(tally.refused)} refused; {tally.applied} applied, "
        f"{tally.duplicate} duplicate, {tally.ignored} ignored",
        errors=tally.errors(),
    )


_SOAP_DOC: dict[str, Any] = {"text/xml": {"schema": {"type": "string"}}}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a vendor's JSON delivery (the fields we read)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def router(settings: IntakeSettings, metrics: IntakeMetrics) -> APIRouter:
    routes = APIRouter(prefix=PREFIX.rstrip("/"), tags=["connectors"])
    currency = settings.common.reporting_currency
    hubspot_connector = Connector("hubspot", settings, metrics)
    salesforce_connector = Connector("salesforce", settings, metrics)
    stripe_connector = Connector("stripe", settings, metrics)
    events = hubspot.HubSpotEvent.model_json_schema(by_alias=True)
    hubspot_body = _json_body({"type": "array", "maxItems": hubspot.MAX_EVENTS, "items": events})
    stripe_body = _json_body(stripe.StripeEvent.model_json_schema())

    @routes.post(
        "/hubspot",
        response_model=ConnectorAccepted,
        summary="HubSpot webhooks API deliveries (deal events), signature v3",
        openapi_extra=hubspot_body,
        responses=problem_responses(401, 404, 413, 422, 503),
    )
    async def hubspot_delivery(request: Request, conn: Transaction) -> Response:
        connector = hubspot_connector
        if not settings.hubspot.enabled:
            return _problem(ConnectorDisabled())
        connector.received()
        raw = await request.body()
        now = datetime.now(UTC)
        url = settings.hubspot.target_url or str(request.url.replace(query=""))
        query = request.url.query
        try:
            signature = hubspot.verify_signature(
                request.headers,
                method=request.method,
                uri=f"{url}?{query}" if query else url,
                body=raw,
                client_secret=settings.hubspot.client_secret.get_secret_value(),
                now=now,
            )
            sent = datetime.fromtimestamp(
                int(request.headers[hubspot.TIMESTAMP_HEADER]) / 1000, UTC
            )
            await _refuse_replay(conn, connector, signature, sent + hubspot.MAX_AGE)
            outcomes = hubspot.map_deal_events(raw, settings.hubspot, currency)
        except ConnectorError as error:
            connector.refused(error.code)
            return _problem(error)
        tally = await connector.apply(conn, outcomes)
        if tally.refused:
            return _refused_events(tally)
        return Response(tally.accepted().model_dump_json(), media_type="application/json")

    @routes.post(
        "/stripe",
        response_model=ConnectorAccepted,
        summary="Stripe customer.subscription.* events, Stripe-Signature",
        openapi_extra=stripe_body,
        responses=problem_responses(401, 404, 413, 422, 503),
    )
    async def stripe_delivery(request: Request, conn: Transaction) -> Response:
        connector = stripe_connector
        if not settings.stripe.enabled:
            return _problem(ConnectorDisabled())
        connector.received()
        raw = await request.body()
        tolerance = settings.stripe.signature_tolerance_seconds
        try:
            signature = stripe.verify_signature(
                request.headers.get(stripe.SIGNATURE_HEADER),
                body=raw,
                secrets=settings.stripe.secrets(),
                now=datetime.now(UTC),
                tolerance_seconds=tolerance,
            )
            await _refuse_replay(
                conn, connector, signature, _stripe_valid_until(request, tolerance)
            )
            outcome = stripe.map_subscription_event(raw, settings.stripe, currency)
        except ConnectorError as error:
            connector.refused(error.code)
            return _problem(error)
        tally = await connector.apply(conn, [outcome])
        if tally.refused:
            return _refused_events(tally)
        return Response(tally.accepted().model_dump_json(), media_type="application/json")

    @routes.post(
        "/salesforce",
        summary="Salesforce Outbound Messages (Opportunity), answered with the SOAP Ack",
        openapi_extra={"requestBody": {"required": True, "content": _SOAP_DOC}},
        responses={
            200: {"description": "The SOAP acknowledgement", "content": _SOAP_DOC},
            401: {"description": "Another organisation: a SOAP fault", "content": _SOAP_DOC},
            422: {"description": "Refused notifications: a SOAP fault", "content": _SOAP_DOC},
            **problem_responses(404, 413, 503),
        },
    )
    async def salesforce_delivery(request: Request, conn: Transaction) -> Response:
        connector = salesforce_connector
        if not settings.salesforce.enabled:
            return _problem(ConnectorDisabled())
        connector.received()
        raw = await request.body()
        try:
            message = salesforce.parse_outbound_message(raw)
            outcomes = salesforce.map_opportunities(message, settings.salesforce, currency)
        except ConnectorError as error:
            connector.refused(error.code)
            return _soap_fault(error.status, error.code, error.message)
        tally = await connector.apply(conn, outcomes)
        if tally.refused:
            summary = "; ".join(f"{e['event']} {e['field']}: {e['code']}" for e in tally.errors())
            return _soap_fault(422, "notifications_refused", summary)
        return Response(salesforce.ACK, media_type=salesforce.ACK_MEDIA_TYPE)

    return routes


def _stripe_valid_until(request: Request, tolerance: int) -> datetime:
    header = request.headers.get(stripe.SIGNATURE_HEADER, "")
    timestamp = next(
        int(value)
        for name, _, value in (item.strip().partition("=") for item in header.split(","))
        if name == "t"
    )  # verified already: the first t= is a number
    return datetime.fromtimestamp(timestamp + tolerance + 1, UTC)


def _soap_fault(status: int, code: str, message: str) -> Response:
    return Response(
        salesforce.soap_fault(code, message), status_code=status,
        media_type=salesforce.ACK_MEDIA_TYPE,
    )  # fmt: skip
