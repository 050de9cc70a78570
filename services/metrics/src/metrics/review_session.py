"""Who is reading the review pack: a bearer token, or one pasted into the sign-in page and
kept in a cookie, checked each time by the one verifier (``verify_access``).

The cookie is HttpOnly, scoped to ``/review``, SameSite=Lax (a link in the Monday email
opens the pack for someone signed in) and Secure outside development, as the inbox's
(handoff/inbox_session.py). The sign-in form carries a one-time nonce in a Strict
cookie (no login CSRF); the sign-out form a token derived from the session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from funnel_common.auth import Principal, Unauthenticated, session_cookie_secure, verify_access
from funnel_common.service import runtime_of
from funnel_common.types import utc_now

SESSION_COOKIE = "funnel_review"
SIGN_IN_COOKIE = "funnel_review_signin"
COOKIE_PATH = "/review"
MAX_FORM_FIELDS = 5


@dataclass(frozen=True)
class Reader:
    principal: Principal
    csrf: str
    """The sign-out form's token (none when the token came in a header)."""


def _csrf(request: Request, principal: Principal) -> str:
    secret = runtime_of(request).settings.auth_secret.get_secret_value().encode()
    return hmac.new(
        secret, f"review-csrf:{principal.token_id}".encode(), hashlib.sha256
    ).hexdigest()


async def principal_of(request: Request, token: str) -> Principal:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as connection:
        return await verify_access(connection, runtime.settings.auth_secret, token)


async def reader_of(request: Request) -> Reader | None:
    """The bearer token's reader, else the session cookie's, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    from_header = scheme.lower() == "bearer" and bool(token.strip())
    token = token.strip() if from_header else request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    try:
        principal = await principal_of(request, token)
    except Unauthenticated:
        return None
    return Reader(principal, "" if from_header else _csrf(request, principal))


def csrf_matches(reader: Reader, sent: str) -> bool:
    return bool(reader.csrf) and hmac.compare_digest(reader.csrf, sent)


def _secure(request: Request) -> bool:
    return session_cookie_secure(request, runtime_of(request).settings.environment)


def set_session(response: Response, request: Request, token: str, principal: Principal) -> None:
    lifetime = int((principal.expires_at - utc_now()).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path=COOKIE_PATH,
        max_age=max(lifetime, 0),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request)
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_nonce(response: Response, request: Request, nonce: str) -> None:
    """The sign-in form's one-time value, only ever read by a post from this page."""
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=COOKIE_PATH,
        max_age=3600,
    )


def nonce_matches(request: Request, sent: str) -> bool:
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    return bool(nonce) and hmac.compare_digest(nonce, sent)


_SAFE_NEXT = re.compile(r"^/review(\?week=[0-9]{4}-W[0-9]{2})?$")


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a review page, never another site."""
    return path if path and _SAFE_NEXT.match(path) else "/review"
