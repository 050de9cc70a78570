"""Closed-loop webhooks: deal outcomes from the CRM, customer events from billing.

Each is HMAC-signed (secret per integration), replay-protected by signature for as long
as the signature is valid, and deduplicated by webhook id; ``deliveries.py`` applies it
(order-independent state), and the state change and its event commit together.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from funnel_common.http import problem_responses
from funnel_common.service import Transaction
from funnel_common.signing import SIGNATURE_HEADER, SignatureError, verify_signature
from lead_intake import deliveries, store
from lead_intake.deliveries import Applied, DeliveryRefused
from lead_intake.edge import Unauthorized, field_error
from lead_intake.models import AccountWebhook, DealWebhook, WebhookAccepted
from lead_intake.settings import IntakeSettings
from lead_intake.telemetry import IntakeMetrics

M = TypeVar("M", bound=BaseModel)


def _signature_header_doc() -> list[dict[str, object]]:
    return [
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>",
            "schema": {"type": "string"},
        }
    ]


def _body_doc(model: type[BaseModel]) -> dict[str, object]:
    return {
        "parameters": _signature_header_doc(),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        },
    }


async def _verified(
    request: Request,
    conn: asyncpg.Connection,
    secret: str,
    settings: IntakeSettings,
    model: type[M],
) -> M:
    raw = await request.body()
    try:
        signature = verify_signature(
            request.headers.get(SIGNATURE_HEADER),
            secret=secret,
            body=raw,
            now=int(time.time()),
            tolerance=settings.signature_tolerance_seconds,
        )
    except SignatureError as error:
        raise Unauthorized(str(error)) from error
    await store.forget_expired_signatures(conn)
    valid_until = datetime.fromtimestamp(signature.invalid_from, UTC)
    if not await store.remember_signatures(conn, [(signature.digest, valid_until)]):
        raise Unauthorized("replayed signature")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from error


def accepted(applied: Applied) -> WebhookAccepted:
    return WebhookAccepted(status=applied.status, subject=applied.subject, state=applied.state)


def refusal(refused: DeliveryRefused) -> RequestValidationError:
    """A refused delivery as a 422 naming its field."""
    return field_error(refused.field, refused.message, refused.code)


def router(settings: IntakeSettings, metrics: IntakeMetrics) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["webhooks"])
    responses = problem_responses(401, 413, 422, 503)
    currency = settings.common.reporting_currency

    @routes.post(
        "/deals",
        response_model=WebhookAccepted,
        summary="Deal opened / updated / won / lost, from the CRM (signed webhook)",
        description="Deliveries may arrive late, twice and in any order: the deal's state "
        "is that of the set of its deliveries (latest `occurred_at` per field, ties broken "
        "by `webhook_id`; the status of the latest opened, won or lost).",
        openapi_extra=_body_doc(DealWebhook),
        responses=responses,
    )
    async def deal_webhook(request: Request, conn: Transaction) -> WebhookAccepted:
        secret = settings.crm_webhook_secret.get_secret_value()
        payload = await _verified(request, conn, secret, settings, DealWebhook)
        try:
            applied = await deliveries.apply_deal(
                conn, "crm", payload, reporting_currency=currency, now=datetime.now(UTC)
            )
        except DeliveryRefused as refused:
            raise refusal(refused) from refused
        metrics.webhooks.labels("crm", applied.status).inc()
        return accepted(applied)

    @routes.post(
        "/accounts/events",
        response_model=WebhookAccepted,
        summary="Account activated / ARR changed / churned, from billing (signed webhook)",
        openapi_extra=_body_doc(AccountWebhook),
        responses=responses,
    )
    async def account_webhook(request: Request, conn: Transaction) -> WebhookAccepted:
        secret = settings.billing_webhook_secret.get_secret_value()
        payload = await _verified(request, conn, secret, settings, AccountWebhook)
        try:
            applied = await deliveries.apply_account(
                conn, "billing", payload, reporting_currency=currency, now=datetime.now(UTC)
            )
        except DeliveryRefused as refused:
            raise refusal(refused) from refused
        metrics.webhooks.labels("billing", applied.status).inc()
        return accepted(applied)

    return routes
