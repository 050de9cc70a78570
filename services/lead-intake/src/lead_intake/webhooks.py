"""Closed-loop webhooks: deal outcomes from the CRM, customer events from billing.

Each is HMAC-signed (secret per integration), replay-protected by signature and
deduplicated by webhook id; the state change and its event commit together.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TypeVar, cast
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from funnel_common import outbox
from funnel_common.events import (
    AccountActivated,
    AccountActivatedData,
    AccountArrChanged,
    AccountArrChangedData,
    AccountChurned,
    AccountChurnedData,
    Attribution,
    DealLost,
    DealLostData,
    DealOpened,
    DealState,
    DealUpdated,
    DealWon,
    DealWonData,
    Envelope,
)
from funnel_common.http import Conflict
from funnel_common.service import Transaction
from funnel_common.signing import SIGNATURE_HEADER, SignatureError, verify
from lead_intake import store
from lead_intake.api import problem_responses
from lead_intake.edge import Unauthorized, field_error
from lead_intake.intake import SERVICE
from lead_intake.models import AccountWebhook, DealWebhook, WebhookAccepted
from lead_intake.outcomes import (
    AccountStatus,
    DealStatus,
    IllegalTransition,
    next_account_status,
    next_deal_status,
)
from lead_intake.screening import normalise_email
from lead_intake.settings import IntakeSettings
from lead_intake.telemetry import IntakeMetrics

Connection = Transaction
M = TypeVar("M", bound=BaseModel)

UNATTRIBUTED = Attribution(source="unattributed")


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
        digest = verify(
            request.headers.get(SIGNATURE_HEADER),
            secret=secret,
            body=raw,
            now=int(time.time()),
            tolerance=settings.signature_tolerance_seconds,
        )
    except SignatureError as error:
        raise Unauthorized(str(error)) from error
    await store.forget_old_signatures(conn, settings.signature_tolerance_seconds)
    if not await store.remember_signature(conn, digest):
        raise Unauthorized("replayed signature")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from error


def _check_currency(currency: str | None, settings: IntakeSettings) -> str:
    reporting = settings.common.reporting_currency
    if currency is not None and currency != reporting:
        raise field_error(
            "currency", f"must be the reporting currency {reporting}", "currency_mismatch"
        )
    return reporting


async def _lead_link(
    conn: asyncpg.Connection, payload: DealWebhook, previous: DealState | None
) -> tuple[Attribution, UUID | None]:
    if payload.lead_id is not None:
        lead = await store.find_lead(conn, payload.lead_id)
        if lead is None:
            raise field_error("lead_id", "no lead has this id", "unknown_lead")
        return lead.attribution, lead.lead_id
    if payload.email is not None:
        lead = await store.find_lead_by_email(conn, normalise_email(payload.email))
        if lead is not None:
            return lead.attribution, lead.lead_id
    if previous is not None:
        return previous.attribution, previous.lead_id
    return UNATTRIBUTED, None


def deal_event(payload: DealWebhook, state: DealState, occurred: datetime) -> Envelope:
    closed_on = payload.closed_on or occurred.date()
    fields = state.model_dump()
    if payload.event == "opened":
        return DealOpened.new(source=SERVICE, subject=state.deal_id, data=state, time=occurred)
    if payload.event == "updated":
        return DealUpdated.new(source=SERVICE, subject=state.deal_id, data=state, time=occurred)
    if payload.event == "won":
        data = DealWonData(**fields, closed_on=closed_on)
        return DealWon.new(source=SERVICE, subject=state.deal_id, data=data, time=occurred)
    if payload.reason is None:
        raise field_error("reason", "a lost deal needs a reason", "missing")
    lost = DealLostData(**fields, closed_on=closed_on, reason=payload.reason)
    return DealLost.new(source=SERVICE, subject=state.deal_id, data=lost, time=occurred)


_DEFAULT_STAGE = {"opened": "open", "updated": "open", "won": "closed_won", "lost": "closed_lost"}


def webhooks_router(settings: IntakeSettings, metrics: IntakeMetrics) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"])
    responses = problem_responses(401, 409, 413, 422)

    @router.post(
        "/deals",
        response_model=WebhookAccepted,
        summary="Deal opened / updated / won / lost, from the CRM (signed webhook)",
        openapi_extra=_body_doc(DealWebhook),
        responses=responses,
    )
    async def deal_webhook(request: Request, conn: Connection) -> WebhookAccepted:
        secret = settings.crm_webhook_secret.get_secret_value()
        payload = await _verified(request, conn, secret, settings, DealWebhook)
        currency = _check_currency(payload.currency, settings)
        if not await store.record_delivery(conn, "crm", payload.webhook_id):
            metrics.webhooks.labels("crm", "duplicate").inc()
            current = await store.find_deal(conn, payload.deal_id)
            return WebhookAccepted(
                status="duplicate",
                subject=payload.deal_id,
                state=current[0] if current else "unknown",
            )
        current = await store.find_deal(conn, payload.deal_id)
        previous_status, previous = current if current else (None, None)
        try:
            status = next_deal_status(cast(DealStatus | None, previous_status), payload.event)
        except IllegalTransition as error:
            raise Conflict(str(error)) from error
        attribution, lead_id = await _lead_link(conn, payload, previous)
        amount = (
            payload.amount_cents
            if payload.amount_cents is not None
            else (previous.amount_cents if previous else None)
        )
        if amount is None:
            raise field_error("amount_cents", "required when the deal is opened", "missing")
        state = DealState(
            deal_id=payload.deal_id,
            lead_id=lead_id,
            attribution=attribution,
            amount_cents=amount,
            currency=currency,
            stage=payload.stage or _DEFAULT_STAGE[payload.event],
            expected_close_date=payload.expected_close_date
            or (previous.expected_close_date if previous else None),
        )
        occurred = payload.occurred_at or datetime.now(UTC)
        event = deal_event(payload, state, occurred)
        await store.save_deal(conn, status, state)
        await outbox.enqueue(conn, event)
        metrics.webhooks.labels("crm", "applied").inc()
        return WebhookAccepted(status="applied", subject=payload.deal_id, state=status)

    @router.post(
        "/accounts/events",
        response_model=WebhookAccepted,
        summary="Account activated / ARR changed / churned, from billing (signed webhook)",
        openapi_extra=_body_doc(AccountWebhook),
        responses=responses,
    )
    async def account_webhook(request: Request, conn: Connection) -> WebhookAccepted:
        secret = settings.billing_webhook_secret.get_secret_value()
        payload = await _verified(request, conn, secret, settings, AccountWebhook)
        currency = _check_currency(payload.currency, settings)
        if not await store.record_delivery(conn, "billing", payload.webhook_id):
            metrics.webhooks.labels("billing", "duplicate").inc()
            current = await store.find_account(conn, payload.account_id)
            return WebhookAccepted(
                status="duplicate",
                subject=payload.account_id,
                state=current[0] if current else "unknown",
            )
        current = await store.find_account(conn, payload.account_id)
        try:
            status = next_account_status(
                cast(AccountStatus | None, current[0] if current else None), payload.event
            )
        except IllegalTransition as error:
            raise Conflict(str(error)) from error
        if payload.event != "churned" and payload.arr_cents is None:
            raise field_error("arr_cents", f"required for {payload.event}", "missing")
        arr = payload.arr_cents if payload.arr_cents is not None else (current[1] if current else 0)
        occurred = payload.occurred_at or datetime.now(UTC)
        subject = payload.account_id
        event: Envelope
        if payload.event == "activated":
            deal = await store.find_deal(conn, payload.deal_id) if payload.deal_id else None
            data = AccountActivatedData(
                account_id=subject,
                arr_cents=arr,
                currency=currency,
                deal_id=payload.deal_id,
                attribution=deal[1].attribution if deal else None,
            )
            event = AccountActivated.new(source=SERVICE, subject=subject, data=data, time=occurred)
        elif payload.event == "arr_changed":
            changed = AccountArrChangedData(account_id=subject, arr_cents=arr, currency=currency)
            event = AccountArrChanged.new(
                source=SERVICE, subject=subject, data=changed, time=occurred
            )
        else:
            churned = AccountChurnedData(account_id=subject)
            event = AccountChurned.new(source=SERVICE, subject=subject, data=churned, time=occurred)
        await store.save_account(conn, subject, status, arr)
        await outbox.enqueue(conn, event)
        metrics.webhooks.labels("billing", "applied").inc()
        return WebhookAccepted(status="applied", subject=subject, state=status)

    return router
