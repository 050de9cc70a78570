"""The inbox's session: a token in a cookie, a CSRF token per session, and form bodies.

A rep signs in by pasting a token; it is checked by the verifier the API uses
(signature, expiry, issued, not revoked) on every request, so revoking it signs the
session out. The cookie is HttpOnly and SameSite=Lax: Lax, not Strict, so that a link in
a notification email opens the handoff for a rep already signed in (a Strict cookie is
not sent on a navigation that starts on another site). Every form post carries a CSRF
token derived from the session's token id with the platform's auth secret, so a page on
another site cannot decide handoffs for a signed-in rep even though Lax cookies travel
with its top-level navigations.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request, Response

from funnel_common.auth import (
    Principal,
    Unauthenticated,
    session_cookie_secure,
    verify_access,
)
from funnel_common.http import DomainError, parse_form
from funnel_common.service import runtime_of
from handoff.inbox_pages import Session

SESSION_COOKIE = "funnel_inbox"
SIGN_IN_COOKIE = "funnel_inbox_signin"
COOKIE_PATH = "/inbox"
# The bulk reassign form: this many handoffs at most, plus its other fields.
MAX_FORM_FIELDS = 210


class CsrfRefused(DomainError):
    status = 403
    slug = "csrf"
    title = "The form is stale or did not come from the inbox; reload the page and try again"


class FormInvalid(DomainError):
    status = 422
    slug = "form-invalid"
    title = "The form could not be read; reload the page and try again"


@dataclass(frozen=True)
class Form:
    """A urlencoded form body: the first value of a field, or all of them."""

    fields: dict[str, list[str]]

    def get(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])


async def form_of(request: Request) -> Form:
    # The platform's form parser: bytes that are not UTF-8 are a 422 (a replaced byte
    # would store a note the rep never wrote), more fields than any inbox form a 413.
    return Form(parse_form(await request.body(), max_fields=MAX_FORM_FIELDS))


def csrf_for(request: Request, principal: Principal) -> str:
    secret = runtime_of(request).settings.auth_secret.get_secret_value().encode()
    message = f"inbox-csrf:{principal.token_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_csrf(form: Form, session: Session) -> None:
    if not hmac.compare_digest(form.get("csrf"), session.csrf):
        raise CsrfRefused()


async def principal_of(request: Request, token: str) -> Principal:
    """The token's principal, checked by the one verifier the API uses too."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        return await verify_access(conn, runtime.settings.auth_secret, token)


async def session_of(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await principal_of(request, token)
    except Unauthenticated:
        return None
    return Session(principal, csrf_for(request, principal))


def secure_cookies(request: Request) -> bool:
    """The platform's rule (funnel_common.auth.session_cookie_secure)."""
    return session_cookie_secure(request, runtime_of(request).settings.environment)


def set_session(response: Response, request: Request, token: str, expires_at: datetime) -> None:
    lifetime = int((expires_at - datetime.now(expires_at.tzinfo)).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path=COOKIE_PATH,
        max_age=max(lifetime, 0),
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_sign_in_nonce(response: Response, request: Request, nonce: str) -> None:
    """The sign-in form's one-time value (no login CSRF); only ever read by a post from
    the inbox's own page, so Strict."""
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path=COOKIE_PATH,
        max_age=3600,
    )


def sign_in_nonce_matches(request: Request, form: Form) -> bool:
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    return bool(nonce) and hmac.compare_digest(form.get("csrf"), nonce)


_SAFE_NEXT = re.compile(r"^/inbox(/[A-Za-z0-9_-]+)*/?(\?[A-Za-z0-9=&_.%-]*)?$")


def safe_next(path: str | None) -> str | None:
    """A page of the inbox to return to after signing in; anything else (another site,
    ``//evil``, a backslash, the sign-in page itself) is refused: no open redirect."""
    if not path or not _SAFE_NEXT.match(path) or path.startswith("/inbox/sign-"):
        return None
    return path
