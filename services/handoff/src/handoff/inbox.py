"""The rep inbox: server-rendered pages (Jinja2, autoescaped) over the flows the API uses.

A rep's queue (on fire first), their accepted leads and decided history, and one
handoff's page with everything needed to reach the lead; sign-in and sign-out. The
manager's team view is ``inbox_team.py``. Decisions go through :mod:`handoff.decisions` in
one transaction each, like the API's routes. Sessions and CSRF: ``inbox_session.py``;
what a page says about a handoff: ``inbox_pages.py``; rendering: ``inbox_render.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError

from funnel_common import outbox
from funnel_common.auth import Unauthenticated
from funnel_common.http import DomainError, NotFound
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from handoff import decisions, people, permissions, store
from handoff import inbox_pages as pages
from handoff import inbox_session as sessions
from handoff.inbox_pages import Session
from handoff.inbox_render import (
    here,
    keyring_of,
    load_cards,
    refusal,
    render_page,
    to_sign_in,
)
from handoff.models import RejectIn

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 20

router = APIRouter(prefix="/inbox", include_in_schema=False)


async def _queue(request: Request, session: Session) -> dict[str, Any]:
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        items = await store.inbox_open_handoffs(
            conn, rep_id=session.principal.subject, team_id=None, limit=200
        )
        cards = await load_cards(conn, session, items, now, keyring_of(request))
    return {"groups": pages.groups(cards)}


async def _queue_page(
    request: Request, session: Session, *, status: int = 200, alerts: Sequence[str] = ()
) -> Response:
    return render_page(
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
    response = render_page(
        request,
        "sign_in.html",
        session=None,
        title="Sign in to the inbox",
        status=status,
        alerts=alerts,
        nonce=nonce,
        next=sessions.safe_next(next_path),
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
    next_path = sessions.safe_next(form.get("next"))
    if not sessions.sign_in_nonce_matches(request, form):
        title = sessions.CsrfRefused.title
        return _sign_in_form(request, next_path=next_path, status=403, alerts=[title])
    token = form.get("token").strip()
    try:
        principal = await sessions.principal_of(request, token)
    except Unauthenticated:
        alerts = ["That token was not accepted."]
        return _sign_in_form(request, next_path=next_path, status=401, alerts=alerts)
    # Back where a notification's link pointed; else a manager's day starts at the team,
    # marketing's at the feedback from sales.
    landing = next_path or _home(Session(principal, ""))
    response = RedirectResponse(landing, status_code=303)
    sessions.set_session(response, request, token, principal.expires_at)
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path=sessions.COOKIE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return to_sign_in()
    try:
        sessions.check_csrf(await sessions.form_of(request), session)
    except DomainError as refused:
        return await _queue_page(request, session, status=refused.status, alerts=[str(refused)])
    response = RedirectResponse("/inbox/sign-in?notice=signed-out", status_code=303)
    sessions.clear_session(response, request)
    return response


# --- a rep's pages --------------------------------------------------------------------
# Marketing holds no handoffs: its queue, accepted leads and decisions are the feedback.


def _home(session: Session) -> str:
    if session.principal.role == "marketing":
        return "/inbox/feedback"
    return "/inbox/team" if session.manages else "/inbox"


def _to_feedback(session: Session) -> Response | None:
    if session.principal.role == "marketing":
        return RedirectResponse("/inbox/feedback", status_code=303)
    return None


@router.get("")
async def inbox(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return to_sign_in(here(request))
    return _to_feedback(session) or await _queue_page(request, session)


@router.get("/queue")
async def queue_fragment(request: Request) -> Response:
    """The queue's HTML alone; the page fetches it every few seconds."""
    session = await sessions.session_of(request)
    if session is None:
        return Response(status_code=401)
    if session.principal.role == "marketing":
        return Response(status_code=403)
    context = await _queue(request, session)
    return render_page(request, "_queue.html", session=session, **context)


@router.get("/accepted")
async def accepted(request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return to_sign_in(here(request))
    if (elsewhere := _to_feedback(session)) is not None:
        return elsewhere
    number = pages.page_number(request.query_params.get("page"))
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        items = await store.inbox_accepted(
            conn,
            rep_id=session.principal.subject,
            limit=PAGE_SIZE + 1,
            offset=(number - 1) * PAGE_SIZE,
        )
        items = await people.opened_items(conn, keyring_of(request), items[: PAGE_SIZE + 1])
    cards = [pages.card(item, session, now) for item in items[:PAGE_SIZE]]
    paging = pages.Paging(number, PAGE_SIZE, has_next=len(items) > PAGE_SIZE)
    return render_page(
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
        return to_sign_in(here(request))
    if (elsewhere := _to_feedback(session)) is not None:
        return elsewhere
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
        found = await people.opened_history(conn, keyring_of(request), found)
    rows = [pages.history_row(decision, handoff) for decision, handoff in found[:PAGE_SIZE]]
    return render_page(
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
        return to_sign_in(here(request))
    now = utc_now()
    async with runtime_of(request).pool.acquire() as conn:
        try:
            await permissions.load_for(conn, handoff_id, session.principal, lock=False)
        except DomainError as refused:
            return refusal(request, refused, session)
        item = await store.inbox_handoff(conn, handoff_id)
        if item is None:  # gone since load_for found it (never deleted today)
            raise NotFound(f"no handoff {handoff_id}")
        [card] = await load_cards(conn, session, [item], now, keyring_of(request))
        breaches = await store.breaches_of(conn, handoff_id)
    return render_page(
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
        # "other" without a note fails the model as a whole: the note is what is missing.
        field = str(problem["loc"][0]) if problem["loc"] else "note"
        raise sessions.FormInvalid(message, field=field) from error


@router.post("/handoffs/{handoff_id}/{action}")
async def decide(handoff_id: UUID, action: str, request: Request) -> Response:
    session = await sessions.session_of(request)
    if session is None:
        return to_sign_in(f"/inbox/handoffs/{handoff_id}")
    if action not in ("accept", "reject", "reassign"):
        return Response(status_code=404)
    principal = session.principal
    try:
        form = await sessions.form_of(request)
        sessions.check_csrf(form, session)
        rejection = _rejection(form) if action == "reject" else None
        async with outbox.transaction(runtime_of(request).pool) as conn:
            if action == "accept":
                await decisions.accept(conn, handoff_id, principal, now=utc_now())
            elif rejection is not None:
                await decisions.reject(
                    conn,
                    handoff_id,
                    principal,
                    rejection,
                    now=utc_now(),
                    keyring=keyring_of(request),
                )
            else:
                to = form.get("rep_id") or None
                await decisions.reassign(conn, handoff_id, principal, to, now=utc_now())
    except DomainError as refused:
        if refused.status in (403, 404) and not isinstance(refused, sessions.CsrfRefused):
            return refusal(request, refused, session)
        return await _queue_page(request, session, status=refused.status, alerts=[str(refused)])
    if action == "accept":
        return RedirectResponse(f"/inbox/handoffs/{handoff_id}?notice=accepted", status_code=303)
    if action == "reject":
        return RedirectResponse("/inbox?notice=rejected", status_code=303)
    return RedirectResponse("/inbox/team?notice=reassigned", status_code=303)
