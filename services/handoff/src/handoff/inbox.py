"""The rep inbox: server-rendered pages (Jinja2, autoescaped) over the flows the API uses.

A rep's queue (on fire first), their accepted leads and decided history, one handoff's
page with everything needed to reach the lead; for managers and admins, the team table
with filters and bulk reassign. Decisions go through :mod:`handoff.flows` in one
transaction each, like the API's routes. Sessions and CSRF: :mod:`handoff.inbox_session`;
what each page says about a handoff: :mod:`handoff.inbox_pages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import asyncpg
import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from funnel_common import outbox
from funnel_common.auth import Forbidden, Principal, Unauthenticated
from funnel_common.http import DomainError
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from handoff import flows, store
from handoff import inbox_pages as pages
from handoff import inbox_session as sessions
from handoff.inbox_pages import Session
from handoff.models import InboxHandoff, RejectIn, Rep
from handoff.routing import UNROUTED_TEAM

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 20
MAX_BULK = 200

_NOTICES = {
    "accepted": "Accepted. The lead is yours: reach them now.",
    "rejected": "Rejected. Thank you for the reason.",
    "reassigned": "Reassigned.",
    "signed-out": "You are signed out.",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _templates() -> Jinja2Templates:
    # Autoescape on every template (not only *.html) and strict about typos.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["iso"] = _iso
    environment.filters["utc"] = pages.utc_text
    environment.globals["reasons"] = pages.REASON_CHOICES
    return Jinja2Templates(env=environment)


TEMPLATES = _templates()

router = APIRouter(prefix="/inbox", include_in_schema=False)


# --- rendering ------------------------------------------------------------------------


def _notice(request: Request) -> str:
    name = request.query_params.get("notice", "")
    count = pages.page_number(request.query_params.get("count"))
    if name == "reassigned" and count > 1:
        return f"Reassigned {count} handoffs."
    return _NOTICES.get(name, "")


def _render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    title: str = "",
    current: str = "",
    status: int = 200,
    alerts: Sequence[str] = (),
    **context: Any,
) -> Response:
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "title": title,
            "session": session,
            "current": current,
            "alerts": list(alerts),
            "notice": _notice(request),
            **context,
        },
        status_code=status,
        headers=_HEADERS,
    )


def _to_sign_in(next_path: str | None = None) -> Response:
    target = "/inbox/sign-in"
    if pages.safe_next(next_path) and next_path != "/inbox":
        target += f"?next={quote(str(next_path), safe='/')}"
    return RedirectResponse(target, status_code=303)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _refused(request: Request, refused: DomainError, session: Session) -> Response:
    titles = {403: "Not yours", 404: "No such handoff", 409: "Too late"}
    return _render(
        request,
        "refused.html",
        session=session,
        title=titles.get(refused.status, "Refused"),
        status=refused.status,
        alerts=[str(refused)],
    )


# --- loading what pages show ---------------------------------------------------------


async def _reps_for(conn: asyncpg.Connection, principal: Principal) -> list[Rep]:
    """Whom the caller may hand work to."""
    if principal.role == "manager" and principal.team:
        return await store.list_reps(conn, principal.team)
    if principal.role == "admin":
        return await store.list_reps(conn, None)
    return []


async def _waiting_reasons(
    conn: asyncpg.Connection, items: Sequence[InboxHandoff], now: datetime
) -> dict[UUID, str]:
    queued = [item.handoff for item in items if item.handoff.status == "queued"]
    teams = {handoff.team_id for handoff in queued} - {UNROUTED_TEAM}
    states = {team: await store.rep_states(conn, team) for team in teams}
    return {
        handoff.handoff_id: pages.why_waiting(handoff, states.get(handoff.team_id, []), now)
        for handoff in queued
    }


async def _cards(
    conn: asyncpg.Connection, session: Session, items: Sequence[InboxHandoff], now: datetime
) -> list[pages.Card]:
    reps = await _reps_for(conn, session.principal)
    reasons = await _waiting_reasons(conn, items, now) if session.manages else {}
    return [
        pages.card(
            item, session, now, reps=reps, waiting_reason=reasons.get(item.handoff.handoff_id)
        )
        for item in pages.by_urgency(items, now)
    ]


async def _queue(request: Request, session: Session) -> dict[str, Any]:
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        items = await store.inbox_open_handoffs(
            conn, rep_id=session.principal.subject, team_id=None, limit=200
        )
        cards = await _cards(conn, session, items, now)
    return {"groups": pages.groups(cards)}


async def _queue_page(
    request: Request, session: Session, *, status: int = 200, alerts: Sequence[str] = ()
) -> Response:
    return _render(
        request,
        "queue.html",
        session=session,
        title="My queue",
        current="queue",
        status=status,
        alerts=alerts,
        **await _queue(request, session),
    )


# --- sign-in --------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in ("inbox.js", "inbox.css"):
        return Response(status_code=404)
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "max-age=300"})


def _sign_in_form(
    request: Request, *, next_path: str | None, status: int = 200, alerts: Sequence[str] = ()
) -> Response:
    nonce = sessions.new_nonce()
    response = _render(
        request,
        "sign_in.html",
        session=None,
        title="Sign in to the inbox",
        status=status,
        alerts=alerts,
        nonce=nonce,
        next=pages.safe_next(next_path),
    )
    sessions.set_sign_in_nonce(response, request, nonce)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(request, next_path=request.query_params.get("next"))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    try:
        form = await sessions.form_of(request)
    except DomainError as refused:
        return _sign_in_form(request, next_path=None, status=refused.status, alerts=[str(refused)])
    next_path = pages.safe_next(form.get("next"))
    if not sessions.sign_in_nonce_matches(request, form):
        title = sessions.CsrfRefused.title
        return _sign_in_form(request, next_path=next_path, status=403, alerts=[title])
    token = form.get("token").strip()
    try:
        principal = await sessions.principal_of(request, token)
    except Unauthenticated:
        alerts = ["That token was not accepted."]
        return _sign_in_form(request, next_path=next_path, status=401, alerts=alerts)
    # Back where a notification's link pointed; else a manager's day starts at the team.
    landing = next_path or ("/inbox/team" if Session(principal, "").manages else "/inbox")
    response = RedirectResponse(landing, status_code=303)
    sessions.set_session(response, request, token, principal.expires_at)
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path=sessions.COOKIE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in()
    try:
        sessions.check_csrf(await sessions.form_of(request), session)
    except DomainError as refused:
        return await _queue_page(request, session, status=refused.status, alerts=[str(refused)])
    response = RedirectResponse("/inbox/sign-in?notice=signed-out", status_code=303)
    sessions.clear_session(response, request)
    return response


# --- a rep's pages --------------------------------------------------------------------


@router.get("")
async def inbox(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(_here(request))
    return await _queue_page(request, session)


@router.get("/queue")
async def queue_fragment(request: Request) -> Response:
    """The queue's HTML alone; the page fetches it every few seconds."""
    session = await sessions.session_of(request)
    if session is None:
        return Response(status_code=401)
    context = await _queue(request, session)
    return _render(request, "_queue.html", session=session, **context)


@router.get("/accepted")
async def accepted(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(_here(request))
    number = pages.page_number(request.query_params.get("page"))
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        items = await store.inbox_accepted(
            conn,
            rep_id=session.principal.subject,
            limit=PAGE_SIZE + 1,
            offset=(number - 1) * PAGE_SIZE,
        )
    cards = [pages.card(item, session, now) for item in items[:PAGE_SIZE]]
    paging = pages.Paging(number, PAGE_SIZE, has_next=len(items) > PAGE_SIZE)
    return _render(
        request,
        "accepted.html",
        session=session,
        title="My accepted leads",
        current="accepted",
        cards=cards,
        paging=paging,
    )


@router.get("/history")
async def history(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(_here(request))
    principal = session.principal
    number = pages.page_number(request.query_params.get("page"))
    decided_by: str | None = principal.subject
    team_id = None
    scope = "Your decisions"
    if principal.role == "manager" and principal.team:
        decided_by, team_id, scope = None, principal.team, f"Team {principal.team}'s decisions"
    elif principal.role == "admin":
        decided_by, scope = None, "Every decision"
    async with runtime_of(request).pool.acquire() as conn:
        found = await store.decision_history(
            conn,
            decided_by=decided_by,
            team_id=team_id,
            limit=PAGE_SIZE + 1,
            offset=(number - 1) * PAGE_SIZE,
        )
    rows = [pages.history_row(decision, handoff) for decision, handoff in found[:PAGE_SIZE]]
    return _render(
        request,
        "history.html",
        session=session,
        title="Decided",
        current="history",
        rows=rows,
        scope=scope,
        paging=pages.Paging(number, PAGE_SIZE, has_next=len(found) > PAGE_SIZE),
    )


@router.get("/handoffs/{handoff_id}")
async def one_handoff(handoff_id: UUID, request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(_here(request))
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        try:
            await flows.load_for(conn, handoff_id, session.principal, lock=False)
        except DomainError as refused:
            return _refused(request, refused, session)
        item = await store.inbox_handoff(conn, handoff_id)
        assert item is not None  # load_for found it
        [card] = await _cards(conn, session, [item], now)
        breaches = await store.breaches_of(conn, handoff_id)
    return _render(
        request, "handoff.html", session=session, title="Handoff", c=card, breaches=breaches
    )


def _rejection(form: sessions.Form) -> RejectIn:
    if not form.get("reason"):
        raise sessions.FormInvalid("Choose a reason for the rejection.", field="reason")
    try:
        return RejectIn.model_validate(
            {"reason": form.get("reason"), "note": form.get("note") or None}
        )
    except ValidationError as error:
        problem = error.errors()[0]
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise sessions.FormInvalid(
            message, field="note" if "note" in message else "reason"
        ) from error


@router.post("/handoffs/{handoff_id}/{action}")
async def decide(handoff_id: UUID, action: str, request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(f"/inbox/handoffs/{handoff_id}")
    if action not in ("accept", "reject", "reassign"):
        return Response(status_code=404)
    principal = session.principal
    try:
        form = await sessions.form_of(request)
        sessions.check_csrf(form, session)
        rejection = _rejection(form) if action == "reject" else None
        async with outbox.transaction(runtime_of(request).pool) as conn:
            if action == "accept":
                await flows.accept(conn, handoff_id, principal, now=utc_now())
            elif rejection is not None:
                await flows.reject(conn, handoff_id, principal, rejection, now=utc_now())
            else:
                to = form.get("rep_id") or None
                await flows.reassign(conn, handoff_id, principal, to, now=utc_now())
    except DomainError as refused:
        if refused.status in (403, 404) and not isinstance(refused, sessions.CsrfRefused):
            return _refused(request, refused, session)
        return await _queue_page(request, session, status=refused.status, alerts=[str(refused)])
    if action == "accept":
        return RedirectResponse(f"/inbox/handoffs/{handoff_id}?notice=accepted", status_code=303)
    if action == "reject":
        return RedirectResponse("/inbox?notice=rejected", status_code=303)
    return RedirectResponse("/inbox/team?notice=reassigned", status_code=303)


# --- the manager's team view ----------------------------------------------------------


class NotAManager(Forbidden):
    title = "The team view is for managers (with a team) and admins"


async def _team(request: Request, session: Session) -> dict[str, Any]:
    principal = session.principal
    params = request.query_params
    team_id = principal.team if principal.role == "manager" else (params.get("team") or None)
    chosen = pages.team_filter(params.get("rep"), params.get("state"))
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        items = await store.inbox_open_handoffs(conn, rep_id=None, team_id=team_id, limit=500)
        cards = await _cards(conn, session, items, now)
        reps = [rep.rep_id for rep in await store.list_reps(conn, team_id)]
        teams = []
        if principal.role == "admin":
            teams = [team.team_id for team in await store.list_teams(conn)] + [UNROUTED_TEAM]
    filters = {"team": team_id if principal.role == "admin" else None, **chosen.query}
    query = urlencode({key: value for key, value in filters.items() if value})
    return {
        "cards": [card for card in cards if chosen.keeps(card)],
        "filtered": chosen.active,
        "chosen": {"team": team_id, "rep": chosen.rep, "state": chosen.state},
        "holders": sorted(set(reps) | {card.holder for card in cards if card.holder}),
        "reps": reps,
        "teams": teams,
        "states": [(state, pages.URGENCY_TEXT[state]) for state in pages.OPEN_URGENCIES],
        "fragment": "/inbox/team/rows" + (f"?{query}" if query else ""),
        "team_title": f"Team {team_id}" if team_id else "Every team",
    }


async def _team_page(
    request: Request, session: Session, *, status: int = 200, alerts: Sequence[str] = ()
) -> Response:
    context = await _team(request, session)
    title = context.pop("team_title")
    return _render(
        request,
        "team.html",
        session=session,
        title=title,
        current="team",
        status=status,
        alerts=alerts,
        **context,
    )


@router.get("/team")
async def team(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in(_here(request))
    if not session.manages:
        return _refused(request, NotAManager(), session)
    return await _team_page(request, session)


@router.get("/team/rows")
async def team_rows(request: Request) -> Response:
    """The team table's rows alone; the page fetches them every few seconds."""
    session = await sessions.session_of(request)
    if session is None:
        return Response(status_code=401)
    if not session.manages:
        return Response(status_code=403)
    context = await _team(request, session)
    return _render(request, "_team_rows.html", session=session, **context)


class NothingSelected(DomainError):
    status = 422
    slug = "form-invalid"
    title = "Select at least one handoff to reassign"


def _selected(form: sessions.Form) -> list[UUID]:
    chosen = form.all("handoff_id")
    if not chosen:
        raise NothingSelected(field="handoff_id")
    if len(chosen) > MAX_BULK:
        raise sessions.FormInvalid(f"Reassign at most {MAX_BULK} at a time", field="handoff_id")
    try:
        return [UUID(value) for value in chosen]
    except ValueError as error:
        raise sessions.FormInvalid("Not a handoff id", field="handoff_id") from error


@router.post("/team/reassign")
async def bulk_reassign(request: Request) -> Response:
    """Each selected handoff in its own transaction: one that was decided meanwhile is
    reported, and the others still move."""
    session = await sessions.session_of(request)
    if session is None:
        return _to_sign_in("/inbox/team")
    if not session.manages:
        return _refused(request, NotAManager(), session)
    try:
        form = await sessions.form_of(request)
        sessions.check_csrf(form, session)
        selected = _selected(form)
    except DomainError as refused:
        return await _team_page(request, session, status=refused.status, alerts=[str(refused)])
    to = form.get("rep_id") or None
    moved, failures = 0, []
    for handoff_id in selected:
        try:
            async with outbox.transaction(runtime_of(request).pool) as conn:
                await flows.reassign(conn, handoff_id, session.principal, to, now=utc_now())
            moved += 1
        except DomainError as refused:
            failures.append((handoff_id, refused))
    if not failures:
        return RedirectResponse(f"/inbox/team?notice=reassigned&count={moved}", status_code=303)
    alerts = [f"Reassigned {moved}." if moved else "Nothing was reassigned."]
    async with runtime_of(request).pool.acquire() as conn:
        for handoff_id, failure in failures:
            found = await store.get_handoff(conn, handoff_id)
            alerts.append(f"{pages.lead_name(found) if found else handoff_id}: {failure}")
    return await _team_page(request, session, status=failures[0][1].status, alerts=alerts)
