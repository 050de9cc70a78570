"""The HTTP edge of lead-intake: per-form CORS, body parsing, refusals.

The body limit, the client's address (from trusted proxies only) and aborted uploads
are every service's, in ``funnel_common`` (``build_web_app``)."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel_common.http import DomainError

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_url(url: str) -> bool:
    """An http(s) URL on this machine (localhost, 127.0.0.1, [::1]), any port.

    In development any form accepts such an origin (and thank-you URL), so a landing page
    works from whatever port a marketer serves it on; elsewhere origins stay exact.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in _LOOPBACK_HOSTS


class Unauthorized(DomainError):
    status = 401
    slug = "signature"
    title = "The webhook signature is missing, wrong, stale or replayed"


class OriginNotAllowed(DomainError):
    status = 403
    slug = "origin-not-allowed"
    title = "This form does not accept posts from this origin"


class RateLimited(DomainError):
    status = 429
    slug = "rate-limited"
    title = "Too many submissions from this client"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Retry after {retry_after} seconds.", headers={"Retry-After": str(retry_after)}
        )


class UnsupportedMediaType(DomainError):
    status = 415
    slug = "unsupported-media-type"
    title = "Send application/json or application/x-www-form-urlencoded"


def field_error(field: str, message: str, code: str = "value_error") -> RequestValidationError:
    """A 422 naming one field, in the same shape as pydantic's own errors."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": code}])


class FormCorsMiddleware:
    """CORS for the lead endpoint, answered only to origins some enabled form lists.

    Which form a post is for is in the body, so the route refuses a post whose origin is
    not the form's own (403); this layer only decides what a browser may read."""

    def __init__(
        self,
        app: ASGIApp,
        origins: Callable[[], frozenset[str]],
        path: str,
        *,
        any_loopback: bool = False,
    ) -> None:
        self._app = app
        self._origins = origins
        self._path = path
        self._any_loopback = any_loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._path:
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/")
        allowed = bool(origin) and (
            origin in self._origins() or (self._any_loopback and is_loopback_url(origin))
        )
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            status = 204 if allowed else 403
            preflight = [(b"vary", b"Origin")]
            if allowed:
                preflight += [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", b"POST"),
                    (b"access-control-allow-headers", b"content-type, idempotency-key"),
                    (b"access-control-max-age", b"600"),
                ]
            await send({"type": "http.response.start", "status": status, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Origin")]
                if allowed:
                    extra.append((b"access-control-allow-origin", origin.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_cors)


class BrowserRefusalPage:
    """A plain HTML form post that is refused gets a page a person can read (what was
    wrong, which fields), with the same status and headers; API clients, which do not
    ask for HTML, keep the problem+json."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self._app = app
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        browser_form_post = (
            scope["type"] == "http"
            and scope["path"] == self._path
            and scope["method"] == "POST"
            and headers.get(b"content-type", b"").startswith(FORM_MEDIA_TYPE.encode())
            and b"text/html" in headers.get(b"accept", b"")
        )
        if not browser_form_post:
            await self._app(scope, receive, send)
            return
        start: Message | None = None
        body = b""

        async def as_page(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/problem"):
                    start = message
                    return
            elif start is not None and message["type"] == "http.response.body":
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                page = _refusal_page(start["status"], json.loads(body or b"{}"))
                kept = [
                    (name, value)
                    for name, value in start.get("headers", [])
                    if name not in (b"content-type", b"content-length")
                ]
                await send(
                    {
                        **start,
                        "headers": [
                            *kept,
                            (b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(page)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self._app(scope, receive, as_page)


def _refusal_page(status: int, problem_body: dict[str, Any]) -> bytes:
    title = html.escape(str(problem_body.get("title", "The form could not be sent")))
    detail = problem_body.get("detail")
    fields = "".join(
        f"<li><strong>{html.escape(str(error.get('field', '')))}</strong>: "
        f"{html.escape(str(error.get('message', '')))}</li>"
        for error in problem_body.get("errors", [])
        if isinstance(error, dict)
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto">'
        f"<h1>{title}</h1>"
        + (f"<p>{html.escape(str(detail))}</p>" if detail else "")
        + (f"<ul>{fields}</ul>" if fields else "")
        + "<p>Nothing was sent. Go back to the form with your browser's Back button, "
        "correct it and send it again.</p>"
        f"<p><small>Error {status} ({html.escape(str(problem_body.get('type', '')))})"
        "</small></p></body></html>"
    ).encode()


async def parsed_body(
    request: Request, numbers: Mapping[str, type[int] | type[float]]
) -> tuple[dict[str, Any], bool]:
    """The body as a dict, and whether it came from a plain HTML form (urlencoded)."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    raw = await request.body()
    if media_type == FORM_MEDIA_TYPE:
        try:
            # Strict: percent-encoded bytes that are not UTF-8 would otherwise become
            # U+FFFD and be stored as something the sender never wrote.
            pairs = parse_qsl(
                raw.decode("utf-8"), keep_blank_values=False, strict_parsing=False, errors="strict"
            )
        except UnicodeDecodeError as error:
            raise field_error("body", "the form body is not UTF-8", "form_invalid") from error
        # An empty input in a plain form means "not given", not "the empty string".
        return {
            name: _form_value(numbers.get(name), value) for name, value in pairs if value.strip()
        }, True
    if media_type not in ("application/json", "") and not media_type.endswith("+json"):
        raise UnsupportedMediaType
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise field_error("body", "the body is not valid JSON", "json_invalid") from error
    if not isinstance(data, dict):
        raise field_error("body", "the body must be a JSON object", "model_type")
    return data, False


def _form_value(number: type[int] | type[float] | None, value: str) -> str | int | float:
    """A plain form's value: text, or for a numeric field the number it spells (left as
    text when it spells none, so validation names the field)."""
    if number is None:
        return value
    try:
        parsed = number(value.strip())
    except ValueError:
        return value
    return parsed if parsed == parsed else value  # "nan" is no number


def client_hash(request: Request) -> str:
    """The client, hashed: an IP address is personal data and never stored in clear.

    The address is the platform's one decision (``funnel_common.service.build_web_app``:
    the peer, or what a trusted proxy says it forwarded for)."""
    client = request.client.host if request.client else "unknown"
    return hashlib.sha256(client.encode()).hexdigest()[:32]


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
