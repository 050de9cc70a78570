"""The HTTP edge shared by the services: RFC 9457 problem details and their mapping, and
the body limit every web process enforces before anything parses a body.

Every error answer is ``application/problem+json`` with a stable ``type``, a human
``title``, the ``status`` and, for validation errors, the offending fields. PostgreSQL
being unavailable answers 503 with ``Retry-After``: the caller retries, nothing is
half-accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel_common.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5
CLIENT_CLOSED_REQUEST = 499
"""Recorded (never sent: nobody is listening) for a request whose client went away
before its body arrived; nginx's code for it."""


class Problem(BaseModel):
    """RFC 9457 problem details, as every error answer of the platform carries them."""

    # A problem may carry members of its own (RFC 9457 extensions), e.g. a 409's state.
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


# What each status means on any route of the platform; a route with a narrower meaning
# still answers the same problem shape.
_WHY = {
    400: "The body could not be parsed",
    401: "No valid bearer token or signature (missing, malformed, expired, forged, "
    "never issued, revoked)",
    403: "The token's role or team may not do this",
    404: "No such resource",
    409: "The resource is no longer in a state that allows this",
    413: "The request body is too large",
    415: "The body's content type is not one this route reads",
    422: "The request is not valid; `errors` names each offending field",
    429: "Too many requests from this client (see Retry-After)",
    503: "PostgreSQL is unavailable; nothing was stored (see Retry-After)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting ``statuses`` as ``application/problem+json``."""
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}},
            "description": _WHY.get(status, "A problem (RFC 9457)"),
        }
        for status in statuses
    }


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


class PayloadTooLarge(StarletteHTTPException):
    """A body over the limit, raised while it is being received.

    An HTTP exception on purpose: FastAPI turns any other error raised while it reads a
    body into a 400, and lets HTTP exceptions through to their handler (a 413)."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"At most {max_body_bytes} bytes.")


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413, before anything parses them, and keeps a
    client that goes away mid-upload from being a server error.

    A declared ``Content-Length`` over the limit is refused without reading a byte; a
    streamed body is refused as soon as it passes the limit. A client that disconnects
    before its body arrived makes whatever the application then raises (Starlette's
    ``ClientDisconnect``, FastAPI's 400 for an unreadable body) moot: the request is
    recorded as :data:`CLIENT_CLOSED_REQUEST`, logged at INFO, and never a 500 with an
    ERROR traceback. Installed inside the HTTP metrics middleware, so the status it
    records is the one counted.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, overrides: Mapping[str, int] | None = None
    ) -> None:
        self._app = app
        self._default = max_body_bytes
        self._overrides = sorted((overrides or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        """The limit for ``path``: the longest matching override prefix's, else the default."""
        return next((size for prefix, size in self._overrides if path.startswith(prefix)),
                    self._default)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0
        body_done = False
        client_gone = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, body_done, client_gone
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    raise PayloadTooLarge(limit)
            elif message["type"] == "http.disconnect" and not body_done:
                client_gone = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if client_gone:  # FastAPI answers 400 for a body it could not read
                    message = {**message, "status": CLIENT_CLOSED_REQUEST}
            await send(message)

        try:
            await self._app(scope, limited_receive, tracking_send)
        except Exception as error:
            if not client_gone:
                raise
            log.info("client closed the request before sending its body", extra={
                "path": scope.get("path"), "error": type(error).__name__})  # fmt: skip
        if client_gone and not started:
            # The server drops what is sent to a closed connection; the metrics
            # middleware outside reads the status from it.
            await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST})
            await send({"type": "http.response.body", "body": b""})


def _too_large(max_body_bytes: int) -> ProblemResponse:
    return problem(
        413,
        "payload-too-large",
        "The request body is too large",
        detail=f"At most {max_body_bytes} bytes.",
    )


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

    @app.exception_handler(PayloadTooLarge)
    async def on_too_large(_: Request, error: PayloadTooLarge) -> ProblemResponse:
        return problem(
            413, "payload-too-large", "The request body is too large", detail=str(error.detail)
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
