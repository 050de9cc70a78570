"""The rep inbox: server-rendered pages over the same flows the API uses.

A rep (or manager) signs in by pasting a token from ``funnel token create``; the token
is checked exactly as the API checks a bearer token (signature, expiry, revocation) and
kept in an HttpOnly, SameSite=Strict cookie (Secure over https). Every form post carries
a CSRF token derived from the session's token id with the platform's auth secret, so a
page on another site cannot decide handoffs for a signed-in rep. Decisions go through
:mod:`handoff.decisions` in one transaction each, like the API's routes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from pathlib import Path
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from funnel_common import outbox
from funnel_common.auth import Principal, Unauthenticated, verify_access
from funnel_common.http import DomainError, parse_form
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from handoff import decisions, permissions, store
from handoff import inbox_pages as pages
from handoff.models import OPEN_STATUSES, RejectIn, Rep

SESSION_COOKIE = "funnel_inbox"
SIGN_IN_COOKIE = "funnel_inbox_signin"
STATIC = Path(__file__).parent / "static"

_NOTICES = {
    "accepted": "Accepted. The lead is yours.",
    "rejected": "Rejected. Thank you for the reason.",
    "reassigned": "Reassigned.",
    "signed-out": "You are signed out.",
}

router = APIRouter(prefix="/inbox", include_in_schema=False)


class CsrfRefused(DomainError):
    status = 403
    slug = "csrf"
    title = "The form is stale or did not come from the inbox; reload the page and try again"


# --- sessions -------------------------------------------------------------------------


def _csrf_for(request: Request, principal: Principal) -> str:
    secret = runtime_of(request).settings.auth_secret.get_secret_value().encode()
    message = f"inbox-csrf:{principal.token_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


async def _principal_of(request: Request, token: str) -> Principal:
    """The token's principal, checked by the one verifier the API uses too."""
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        return await verify_access(conn, runtime.settings.auth_secret, token)


async def _session(request: Request) -> pages.Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await _principal_of(request, token)
    except Unauthenticated:
        return None
    return pages.Session(principal, _csrf_for(request, principal))


async def _form(request: Request) -> dict[str, str]:
    # Limits and bad bytes are 4xx answers (funnel_common.http), never a 500.
    return parse_form(await request.body(), max_fields=20)


def _check_csrf(form: dict[str, str], expected: str) -> None:
    if not hmac.compare_digest(form.get("csrf", ""), expected):
        raise CsrfRefused()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@asynccontextmanager
async def _transaction(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with outbox.transaction(runtime_of(request).pool) as conn:
        yield conn


async def _queue_html(request: Request, session: pages.Session) -> str:
    principal = session.principal
    rep_id, team_id = permissions.queue_scope(principal)
    async with runtime_of(request).pool.acquire() as conn:
        handoffs = await store.list_handoffs(
            conn, rep_id=rep_id, team_id=team_id, statuses=OPEN_STATUSES, limit=200
        )
        reps = await _reps_for(conn, principal)
    if not handoffs:
        return '<p class="empty">Nothing waiting. New leads appear here by themselves.</p>'
    now = utc_now()
    return "\n".join(pages.card(handoff, session, reps, now) for handoff in handoffs)


async def _reps_for(conn: asyncpg.Connection, principal: Principal) -> list[Rep]:
    if principal.role == "manager" and principal.team:
        return await store.list_reps(conn, principal.team)
    if principal.role == "admin":
        return await store.list_reps(conn, None)
    return []


async def _inbox(
    request: Request, session: pages.Session, *, message: str = "", status: int = 200
) -> Response:
    notice = _NOTICES.get(request.query_params.get("notice", ""), "")
    flash = pages.alert(message) if message else ""
    if notice:
        flash += f'<p class="notice" role="status">{escape(notice)}</p>'
    team = session.principal.role == "manager" and session.principal.team
    title = f"Team {session.principal.team} queue" if team else "My queue"
    body = (
        f'{flash}<p id="queue-news" aria-live="polite" class="news"></p>'
        f'<section id="queue" aria-label="Handoffs, soonest due first" '
        f'data-fragment="/inbox/queue">{await _queue_html(request, session)}</section>'
    )
    return pages.page(title, body, session=session, status=status)


def _to_sign_in() -> Response:
    return RedirectResponse("/inbox/sign-in", status_code=303)


# --- routes ---------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in ("inbox.js", "inbox.css"):
        return Response(status_code=404)
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "max-age=300"})


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(request)


def _sign_in_form(request: Request, *, message: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    notice = _NOTICES.get(request.query_params.get("notice", ""), "")
    body = (
        (pages.alert(message) if message else "")
        + (f'<p class="notice" role="status">{escape(notice)}</p>' if notice else "")
        + f"""<form method="post" action="/inbox/sign-in" class="sign-in">
<input type="hidden" name="csrf" value="{nonce}">
<label for="token">Your token (from <code>funnel token create</code>)</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Sign in</button>
</form>"""
    )
    response = pages.page("Sign in to the inbox", body, status=status)
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/inbox",
        max_age=3600,
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not hmac.compare_digest(form.get("csrf", ""), nonce):
        return _sign_in_form(request, message=CsrfRefused.title, status=403)
    token = form.get("token", "").strip()
    try:
        principal = await _principal_of(request, token)
    except Unauthenticated:
        return _sign_in_form(request, message="That token was not accepted.", status=401)
    response = RedirectResponse("/inbox", status_code=303)
    lifetime = int((principal.expires_at - utc_now()).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/inbox",
        max_age=max(lifetime, 0),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/inbox")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    try:
        _check_csrf(await _form(request), session.csrf)
    except CsrfRefused as refused:
        return await _inbox(request, session, message=str(refused), status=403)
    response = RedirectResponse("/inbox/sign-in?notice=signed-out", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/inbox", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


@router.get("")
async def inbox(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    return await _inbox(request, session)


@router.get("/queue")
async def queue_fragment(request: Request) -> Response:
    """The queue's HTML alone; the page polls it every few seconds."""
    session = await _session(request)
    if session is None:
        return Response(status_code=401)
    return HTMLResponse(await _queue_html(request, session), headers={"Cache-Control": "no-store"})


@router.get("/handoffs/{handoff_id}")
async def one_handoff(handoff_id: UUID, request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    try:
        async with runtime_of(request).pool.acquire() as conn:
            handoff = await permissions.load_for(conn, handoff_id, session.principal, lock=False)
            reps = await _reps_for(conn, session.principal)
    except DomainError as refused:
        return _refusal(refused, session)
    body = pages.card(handoff, session, reps, utc_now()) + pages.BACK
    return pages.page("Handoff", body, session=session)


def _refusal(refused: DomainError, session: pages.Session) -> Response:
    titles = {403: "Not yours", 404: "No such handoff", 409: "Too late"}
    body = pages.alert(str(refused)) + pages.BACK
    title = titles.get(refused.status, "Refused")
    return pages.page(title, body, session=session, status=refused.status)


@router.post("/handoffs/{handoff_id}/{action}")
async def decide(handoff_id: UUID, action: str, request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    principal = session.principal
    try:
        form = await _form(request)
        _check_csrf(form, session.csrf)
        async with _transaction(request) as conn:
            if action == "accept":
                await decisions.accept(conn, handoff_id, principal, now=utc_now())
                notice = "accepted"
            elif action == "reject":
                try:
                    body = RejectIn(reason=form.get("reason", ""), note=form.get("note") or None)  # type: ignore[arg-type]
                except ValidationError as error:
                    problem = error.errors()[0]["msg"].removeprefix("Value error, ")
                    return await _inbox(request, session, message=problem, status=422)
                await decisions.reject(conn, handoff_id, principal, body, now=utc_now())
                notice = "rejected"
            elif action == "reassign":
                to = form.get("rep_id") or None
                await decisions.reassign(conn, handoff_id, principal, to, now=utc_now())
                notice = "reassigned"
            else:
                return Response(status_code=404)
    except DomainError as refused:
        if isinstance(refused, CsrfRefused):
            return await _inbox(request, session, message=str(refused), status=403)
        if refused.status == 409:
            return await _inbox(request, session, message=str(refused), status=409)
        return _refusal(refused, session)
    return RedirectResponse(f"/inbox?notice={notice}", status_code=303)
