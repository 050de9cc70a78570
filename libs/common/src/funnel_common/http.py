"""The HTTP edge shared by the services: RFC 9457 problem details and their mapping.

Every error answer is ``application/problem+json`` with a stable ``type``, a human
``title``, the ``status`` and, for validation errors, the offending fields. PostgreSQL
being unavailable answers 503 with ``Retry-After``: the caller retries, nothing is
half-accepted.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from funnel_common.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    slug: str,
    title: str,
    *,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """An RFC 9457 problem response whose ``type`` is ``/problems/<slug>``."""
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


class DomainError(Exception):
    """A named refusal from domain code, mapped to a problem response at the edge."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class FormNotUtf8(DomainError):
    status = 422
    slug = "form-invalid"
    title = "The form was not sent as UTF-8; reload the page and try again"


class FormTooLarge(DomainError):
    status = 413
    slug = "form-too-large"
    title = "The form has more fields than this page sends"


def parse_form(body: bytes, *, max_fields: int) -> dict[str, list[str]]:
    """A urlencoded form body: each field's values, in order.

    The parser's limits are answers, not crashes: more than ``max_fields`` fields is a
    413 (:class:`FormTooLarge`; the standard library raises a bare ``ValueError`` that
    would be a 500), bytes that are not UTF-8 a 422 (:class:`FormNotUtf8`; a replaced
    byte would store text the sender never wrote). Starlette's own ``request.form()``
    turns its limits into a 400 already.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormNotUtf8() from error
    try:
        fields = parse_qs(text, max_num_fields=max_fields, errors="strict")
    except UnicodeDecodeError as error:  # percent-encoded bytes that are not UTF-8
        raise FormNotUtf8() from error
    except ValueError as error:  # counted from the separators, before anything is built
        raise FormTooLarge(f"at most {max_fields} fields", max_fields=max_fields) from error
    return fields


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    # The submitted value is left out on purpose: it may be personal data.
    return [
        {
            "field": ".".join(str(part) for part in item["loc"] if part != "body") or "body",
            "message": item["msg"],
            "code": item["type"],
        }
        for item in error.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Map validation, HTTP, domain and database-outage errors to problem responses."""

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, error: RequestValidationError) -> ProblemResponse:
        return problem(
            422,
            "validation",
            "The request is not valid",
            errors=_validation_errors(error),
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, error: StarletteHTTPException) -> ProblemResponse:
        return problem(
            error.status_code,
            f"http-{error.status_code}",
            str(error.detail),
            headers=dict(error.headers or {}),
        )

    @app.exception_handler(DomainError)
    async def on_domain_error(_: Request, error: DomainError) -> ProblemResponse:
        return problem(
            error.status,
            error.slug,
            error.title,
            detail=error.detail,
            headers=error.headers,
            **error.extensions,
        )

    async def on_database_unavailable(_: Request, error: Exception) -> ProblemResponse:
        log.warning("request refused: database unavailable", extra={"error": type(error).__name__})
        return problem(
            503,
            "unavailable",
            "The service is temporarily unavailable; nothing was stored",
            detail="Retry after the number of seconds in Retry-After.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, on_database_unavailable)
