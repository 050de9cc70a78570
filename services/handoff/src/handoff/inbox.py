"""The rep inbox: server-rendered pages over the same flows the API uses.

A rep (or manager) signs in by pasting a token from ``funnel token create``; the token
is checked exactly as the API checks a bearer token (signature, expiry, revocation) and
kept in an HttpOnly, SameSite=Strict cookie (Secure over https). Every form post carries
a CSRF token derived from the session's token id with the platform's auth secret, so a
page on another site cannot decide handoffs for a signed-in rep. Decisions go through
:mod:`handoff.flows` in one transaction each, like the API's routes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from funnel_common import outbox
from funnel_common.auth import Principal, Unauthenticated, token_hash, verify_token
from funnel_common.events import REJECTION_REASONS
from funnel_common.http import DomainError
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from handoff import flows, store
from handoff.models import OPEN_STATUSES, Handoff, RejectIn, Rep

SESSION_COOKIE = "funnel_inbox"
SIGN_IN_COOKIE = "funnel_inbox_signin"
STATIC = Path(__file__).parent / "static"
_BACK = '<p><a href="/inbox">Back to the queue</a></p>'

SlaState = Literal["on-time", "at-risk", "breached", "none"]
_SLA_TEXT: dict[SlaState, str] = {
    "on-time": "On time",
    "at-risk": "At risk",
    "breached": "Breached",
    "none": "Waiting for a rep",
}
_NOTICES = {
    "accepted": "Accepted. The lead is yours.",
    "rejected": "Rejected. Thank you for the reason.",
    "reassigned": "Reassigned.",
    "signed-out": "You are signed out.",
}

router = APIRouter(prefix="/inbox", include_in_schema=False)


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str


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
    """The token's principal, checked exactly as the API checks a bearer token."""
    principal = verify_token(runtime_of(request).settings.auth_secret, token)
    async with runtime_of(request).pool.acquire() as conn:
        if not await store.token_usable(conn, token_hash(token)):
            raise Unauthenticated("token revoked")
    return principal


async def _session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await _principal_of(request, token)
    except Unauthenticated:
        return None
    return Session(principal, _csrf_for(request, principal))


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[0] for key, values in parse_qs(body, max_num_fields=20).items()}


def _check_csrf(form: dict[str, str], expected: str) -> None:
    if not hmac.compare_digest(form.get("csrf", ""), expected):
        raise CsrfRefused()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@asynccontextmanager
async def _transaction(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with runtime_of(request).pool.acquire() as conn:
        async with conn.transaction():
            yield conn
        await outbox.wake_relay(conn)


# --- rendering ------------------------------------------------------------------------


def _page(title: str, body: str, *, session: Session | None = None, status: int = 200) -> Response:
    header = ""
    if session is not None:
        who = session.principal
        team = f", team {escape(who.team)}" if who.team else ""
        header = (
            f"<header><p>Signed in as <strong>{escape(who.subject)}</strong> "
            f"({escape(who.role)}{team})</p>"
            f'<form method="post" action="/inbox/sign-out">{_csrf_field(session)}'
            '<button type="submit">Sign out</button></form></header>'
        )
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Shared Funnel inbox</title>
<link rel="stylesheet" href="/inbox/static/inbox.css">
</head>
<body>
{header}
<main>
<h1>{escape(title)}</h1>
{body}
</main>
<script src="/inbox/static/inbox.js" defer></script>
</body>
</html>"""
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
        },
    )


def _csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'


def _alert(message: str) -> str:
    return f'<p class="alert" role="alert">{escape(message)}</p>'


def sla_state(handoff: Handoff, now: datetime) -> SlaState:
    """on-time, at-risk (past the policy's at-risk threshold) or breached (past due)."""
    if handoff.due_at is None:
        return "none"
    if now >= handoff.due_at:
        return "breached"
    if handoff.at_risk_at is not None and now >= handoff.at_risk_at:
        return "at-risk"
    return "on-time"


def _text(value: object) -> str:
    return escape(str(value)) if value not in (None, "") else "—"


def _lead_name(handoff: Handoff) -> str:
    profile = handoff.profile
    parts = [str(profile[key]) for key in ("first_name", "last_name") if profile.get(key)]
    return " ".join(parts) or str(profile.get("email") or "Unnamed lead")


def _sla(handoff: Handoff, now: datetime) -> str:
    state = sla_state(handoff, now)
    if handoff.due_at is None:
        return f'<p class="sla sla-none"><span class="sla-state">{_SLA_TEXT[state]}</span></p>'
    at_risk = handoff.at_risk_at.isoformat() if handoff.at_risk_at else ""
    return (
        f'<p class="sla sla-{state}" data-due="{handoff.due_at.isoformat()}" '
        f'data-at-risk="{at_risk}">SLA: <span class="sla-state">{_SLA_TEXT[state]}</span> · '
        f'<span class="sla-countdown">due {handoff.due_at:%Y-%m-%d %H:%M} UTC</span></p>'
    )


def _actions(handoff: Handoff, session: Session, reps: list[Rep]) -> str:
    hid = handoff.handoff_id
    csrf = _csrf_field(session)
    parts: list[str] = []
    mine = handoff.rep_id == session.principal.subject
    if mine and handoff.status in ("assigned", "escalated"):
        options = "".join(
            f'<option value="{reason}">{reason.replace("_", " ")}</option>'
            for reason in REJECTION_REASONS
        )
        parts.append(
            f'<form method="post" action="/inbox/handoffs/{hid}/accept" class="inline">{csrf}'
            f'<button type="submit" class="accept">Accept</button></form>'
            f'<form method="post" action="/inbox/handoffs/{hid}/reject" class="reject">{csrf}'
            f'<label for="reason-{hid}">Reason</label>'
            f'<select id="reason-{hid}" name="reason" required>{options}</select>'
            f'<label for="note-{hid}">Note (required for “other”)</label>'
            f'<input id="note-{hid}" name="note" maxlength="2000">'
            f'<button type="submit">Reject</button></form>'
        )
    if session.principal.role in ("manager", "admin") and handoff.status in OPEN_STATUSES:
        choices = "".join(
            f'<option value="{escape(rep.rep_id)}">{escape(rep.rep_id)}</option>'
            for rep in reps
            if rep.rep_id != handoff.rep_id
        )
        parts.append(
            f'<form method="post" action="/inbox/handoffs/{hid}/reassign" class="reassign">'
            f'{csrf}<label for="to-{hid}">Reassign to</label>'
            f'<select id="to-{hid}" name="rep_id"><option value="">next eligible rep</option>'
            f'{choices}</select><button type="submit">Reassign</button></form>'
        )
    return "".join(parts)


def _card(handoff: Handoff, session: Session, reps: list[Rep], now: datetime) -> str:
    profile = handoff.profile
    attribution = handoff.attribution
    source = escape(attribution.source) + (
        f" / {escape(attribution.campaign)}" if attribution.campaign else ""
    )
    assigned = f"{handoff.assigned_at:%Y-%m-%d %H:%M} UTC" if handoff.assigned_at else "—"
    reasons = ", ".join(
        f"{reason.get('rule', '?')} {int(reason.get('points', 0)):+d}"
        for reason in handoff.score_reasons
    )
    why = f" ({escape(reasons)})" if reasons else ""
    hid = handoff.handoff_id
    name = escape(_lead_name(handoff))
    return f"""<article class="handoff" id="h-{hid}" aria-labelledby="n-{hid}">
<h2 id="n-{hid}"><a href="/inbox/handoffs/{hid}">{name}</a></h2>
{_sla(handoff, now)}
<dl>
<dt>Company</dt><dd>{_text(profile.get("company"))}</dd>
<dt>Title</dt><dd>{_text(profile.get("title"))}</dd>
<dt>Source / campaign</dt><dd>{source}</dd>
<dt>Score</dt><dd>{handoff.score}{why}</dd>
<dt>Assigned</dt><dd>{assigned}</dd>
<dt>Holder</dt><dd>{_text(handoff.rep_id)}</dd>
<dt>Status</dt><dd>{escape(handoff.status)}</dd>
<dt>Breaches</dt><dd>{handoff.breaches}</dd>
</dl>
{_actions(handoff, session, reps)}
</article>"""


async def _queue_html(request: Request, session: Session) -> str:
    principal = session.principal
    rep_id: str | None = None
    team_id: str | None = None
    if principal.role == "rep" or (principal.role == "manager" and principal.team is None):
        rep_id = principal.subject
    elif principal.role == "manager":
        team_id = principal.team
    async with runtime_of(request).pool.acquire() as conn:
        handoffs = await store.list_handoffs(
            conn, rep_id=rep_id, team_id=team_id, statuses=OPEN_STATUSES, limit=200
        )
        reps = await _reps_for(conn, principal)
    if not handoffs:
        return '<p class="empty">Nothing waiting. New leads appear here by themselves.</p>'
    now = utc_now()
    return "\n".join(_card(handoff, session, reps, now) for handoff in handoffs)


async def _reps_for(conn: asyncpg.Connection, principal: Principal) -> list[Rep]:
    if principal.role == "manager" and principal.team:
        return await store.list_reps(conn, principal.team)
    if principal.role == "admin":
        return await store.list_reps(conn, None)
    return []


async def _inbox(
    request: Request, session: Session, *, message: str = "", status: int = 200
) -> Response:
    notice = _NOTICES.get(request.query_params.get("notice", ""), "")
    flash = _alert(message) if message else ""
    if notice:
        flash += f'<p class="notice" role="status">{escape(notice)}</p>'
    team = session.principal.role == "manager" and session.principal.team
    title = f"Team {session.principal.team} queue" if team else "My queue"
    body = (
        f'{flash}<section id="queue" aria-live="polite" aria-label="Handoffs, soonest due first" '
        f'data-fragment="/inbox/queue">{await _queue_html(request, session)}</section>'
    )
    return _page(title, body, session=session, status=status)


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
        (_alert(message) if message else "")
        + (f'<p class="notice" role="status">{escape(notice)}</p>' if notice else "")
        + f"""<form method="post" action="/inbox/sign-in" class="sign-in">
<input type="hidden" name="csrf" value="{nonce}">
<label for="token">Your token (from <code>funnel token create</code>)</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Sign in</button>
</form>"""
    )
    response = _page("Sign in to the inbox", body, status=status)
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
            handoff = await flows.load_for(conn, handoff_id, session.principal, lock=False)
            reps = await _reps_for(conn, session.principal)
    except DomainError as refused:
        return _refusal(refused, session)
    body = _card(handoff, session, reps, utc_now()) + _BACK
    return _page("Handoff", body, session=session)


def _refusal(refused: DomainError, session: Session) -> Response:
    titles = {403: "Not yours", 404: "No such handoff", 409: "Too late"}
    body = _alert(str(refused)) + _BACK
    title = titles.get(refused.status, "Refused")
    return _page(title, body, session=session, status=refused.status)


@router.post("/handoffs/{handoff_id}/{action}")
async def decide(handoff_id: UUID, action: str, request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    form = await _form(request)
    principal = session.principal
    try:
        _check_csrf(form, session.csrf)
        async with _transaction(request) as conn:
            if action == "accept":
                await flows.accept(conn, handoff_id, principal, now=utc_now())
                notice = "accepted"
            elif action == "reject":
                try:
                    body = RejectIn(reason=form.get("reason", ""), note=form.get("note") or None)  # type: ignore[arg-type]
                except ValidationError as error:
                    problem = error.errors()[0]["msg"].removeprefix("Value error, ")
                    return await _inbox(request, session, message=problem, status=422)
                await flows.reject(conn, handoff_id, principal, body, now=utc_now())
                notice = "rejected"
            elif action == "reassign":
                to = form.get("rep_id") or None
                await flows.reassign(conn, handoff_id, principal, to, now=utc_now())
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
