"""Lead routes: parse, refuse early, call the capture flow, answer JSON or a redirect."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from opentelemetry import context as otel_context
from pydantic import ValidationError

from funnel_common.http import DomainError, problem_responses
from funnel_common.personal import keyring
from funnel_common.signing import SIGNATURE_HEADER, SignatureError, verify_signature
from lead_intake import intake
from lead_intake.batching import GroupCommitter
from lead_intake.capture import Accepted, LeadWriter, Limits, Outcome, SignedImport, Submitted
from lead_intake.edge import (
    OriginNotAllowed,
    Unauthorized,
    field_error,
    parsed_body,
    request_hash,
)
from lead_intake.edge import client_hash as client_hash_of
from lead_intake.forms import Form, FormRegistry
from lead_intake.intake import CapturedAtRefused, IntakePolicy
from lead_intake.models import FORM_NUMBERS, LeadAccepted, LeadReceived, LeadSubmission
from lead_intake.qualification import Rules
from lead_intake.settings import IntakeSettings
from lead_intake.telemetry import IntakeMetrics

SERVICE = intake.SERVICE
LEADS_PATH = "/v1/leads"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeContext:
    """What the routes need, built once by create_app."""

    settings: IntakeSettings
    forms: FormRegistry
    rules: Rules
    metrics: IntakeMetrics


def _submission_schema() -> dict[str, Any]:
    return LeadSubmission.model_json_schema()


def _form_schema() -> dict[str, Any]:
    """The submission as a plain HTML form sends it: a form has no null, and an input
    left empty is a field not given."""
    schema = LeadSubmission.model_json_schema()
    required = set(schema.get("required", []))
    for name, field in schema["properties"].items():
        options = field.pop("anyOf", None)
        if options is not None:
            field.update(next(option for option in options if option.get("type") != "null"))
        if "default" in field and field["default"] is None:
            del field["default"]
        if name not in required:
            field = {"anyOf": [field, {"type": "string", "maxLength": 0}]}
        schema["properties"][name] = field
    return schema


def _required_missing(form: Form, submission: LeadSubmission) -> RequestValidationError | None:
    missing = [
        name
        for name in form.required_fields
        if getattr(submission, name, None) in (None, "") and name not in submission.extra
    ]
    if not missing:
        return None
    return RequestValidationError(
        [
            {"loc": ("body", name), "msg": "required by this form", "type": "missing"}
            for name in missing
        ]
    )


def _verify_signed_import(
    request: Request, raw: bytes, settings: IntakeSettings
) -> SignedImport | None:
    """A signed post comes from `funnel import`: trusted, so not rate limited."""
    header = request.headers.get(SIGNATURE_HEADER)
    if header is None:
        return None
    try:
        verified = verify_signature(
            header,
            secret=settings.import_secret.get_secret_value(),
            body=raw,
            now=int(time.time()),
            tolerance=settings.signature_tolerance_seconds,
        )
    except SignatureError as error:
        raise Unauthorized(str(error)) from error
    return SignedImport(
        digest=verified.digest, valid_until=datetime.fromtimestamp(verified.invalid_from, UTC)
    )


def response_of(outcome: Outcome) -> Response:
    """The HTTP answer to a submission's outcome."""
    if isinstance(outcome, DomainError):
        raise outcome
    headers = {"idempotent-replayed": "true"} if outcome.replayed else None
    if outcome.redirect_to is not None:
        return RedirectResponse(outcome.redirect_to, status_code=303, headers=headers)
    return JSONResponse(outcome.answer.model_dump(mode="json"), status_code=202, headers=headers)


def router(context: IntakeContext) -> APIRouter:
    settings = context.settings
    # A landing page served from any port of this machine may post (docs/lead-intake.md).
    development = settings.common.environment == "development"
    routes = APIRouter(prefix="/v1", tags=["leads"])

    @routes.post(
        "/leads",
        status_code=202,
        response_model=LeadReceived | LeadAccepted,
        summary="Capture a lead from a marketing form (JSON or a plain HTML form post)",
        description="An anonymous post is answered with a receipt, the same whether the "
        "person is new or known; a post signed with the import secret (`funnel import`) "
        "is told the lead's id, status and score.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _submission_schema()},
                    "application/x-www-form-urlencoded": {"schema": _form_schema()},
                },
            }
        },
        responses={
            303: {"description": "A form post: redirect to the form's thank-you URL"},
            **problem_responses(401, 403, 409, 413, 415, 422, 429, 503),
        },
    )
    async def capture_lead(request: Request) -> Response:
        body, from_html_form = await parsed_body(request, FORM_NUMBERS)
        signed = _verify_signed_import(request, await request.body(), settings)
        try:
            submission = LeadSubmission.model_validate(body)
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from error
        form = context.forms.get(submission.form_id)
        if form is None:
            raise field_error("form_id", "no enabled form has this id", "unknown_form")
        if form.key is not None and submission.form_key != form.key:
            raise field_error("form_key", "does not match the form's public key", "form_key")
        if not form.allows_origin(request.headers.get("origin"), any_loopback=development):
            raise OriginNotAllowed
        if (missing := _required_missing(form, submission)) is not None:
            raise missing
        try:
            captured_at = intake.captured_at_of(
                submission, trusted=signed is not None, now=datetime.now(UTC)
            )
        except CapturedAtRefused as refused:
            raise field_error("captured_at", str(refused), refused.code) from refused
        redirect_to = (
            form.thank_you_url(submission.thank_you_url, any_loopback=development)
            if from_html_form
            else None
        )
        if from_html_form and submission.thank_you_url is not None and redirect_to is None:
            raise field_error(
                "thank_you_url", "not one of the form's thank-you URLs", "redirect_not_allowed"
            )
        key = request.headers.get("idempotency-key")
        if key is not None and (not 1 <= len(key) <= 200 or "\x00" in key):
            raise field_error("Idempotency-Key", "1 to 200 characters", "idempotency_key")

        # Written with concurrent requests' submissions in one transaction; answered
        # only once that transaction has committed.
        committer: LeadCommitter = request.state.lead_committer
        outcome = await committer.submit(
            Submitted(
                submission=submission,
                form=form,
                captured_at=captured_at,
                redirect_to=redirect_to,
                idempotency_key=key,
                fingerprint=request_hash(body) if key is not None else None,
                signed=signed,
                client_hash=client_hash_of(request),
                trace_context=otel_context.get_current(),
            )
        )
        if isinstance(outcome, Accepted) and outcome.lead_status is not None:
            context.metrics.submissions.labels(submission.form_id, outcome.lead_status).inc()
            # One line per lead, ids only: its trace_id is where `grep` starts following it
            # through the workers' lines (docs/operations.md, Logs).
            log.info(
                "lead captured",
                extra={"form_id": submission.form_id, "lead_status": outcome.lead_status},
            )
        return response_of(outcome)

    @routes.get(
        "/qualification/rules",
        response_model=Rules,
        tags=["qualification"],
        summary="The qualification rules in force and their version",
    )
    async def qualification_rules() -> Rules:
        return context.rules

    return routes


LeadCommitter = GroupCommitter[Submitted, Outcome]


def lead_committer(
    pool: asyncpg.Pool, settings: IntakeSettings, rules: Rules, metrics: IntakeMetrics
) -> LeadCommitter:
    """The group committer that writes POST /v1/leads submissions in batches."""
    policy = IntakePolicy(
        rules=rules,
        min_fill_seconds=settings.min_fill_seconds,
        disposable_domains=frozenset(d.lower().strip(".") for d in settings.disposable_domains),
        dedupe_window=timedelta(days=settings.dedupe_window_days),
    )
    limits = Limits(
        rate_limit_per_client=settings.rate_limit_per_client,
        rate_limit_window_seconds=settings.rate_limit_window_seconds,
        idempotency_key_ttl_hours=settings.idempotency_key_ttl_hours,
    )
    return GroupCommitter(
        pool,
        LeadWriter(policy, limits, keyring(settings.common.personal_data_key)),
        max_batch=settings.batch_max_size,
        max_wait_seconds=settings.batch_max_wait_ms / 1000,
        max_in_flight=settings.batch_max_in_flight,
        observe_size=metrics.lead_batch_size.observe,
    )
