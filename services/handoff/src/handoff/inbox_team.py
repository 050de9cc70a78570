"""The manager's team view: a compact table, filters by holder and SLA state, and bulk
reassign; what waits for a rep says why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from funnel_common import outbox
from funnel_common.auth import Forbidden
from funnel_common.http import DomainError
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from handoff import decisions, people, store
from handoff import inbox_pages as pages
from handoff import inbox_session as sessions
from handoff import inbox_urgency as urgency
from handoff.inbox_pages import Session
from handoff.inbox_render import (
    here,
    keyring_of,
    load_cards,
    refusal,
    render_page,
    to_sign_in,
)
from handoff.routing import UNROUTED_TEAM

MAX_BULK = 200

router = APIRouter(prefix="/inbox", include_in_schema=False)


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
        cards = await load_cards(conn, session, items, now, keyring_of(request))
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
        "states": [(state, urgency.URGENCY_TEXT[state]) for state in urgency.OPEN_URGENCIES],
        "fragment": "/inbox/team/rows" + (f"?{query}" if query else ""),
        "team_title": f"Team {team_id}" if team_id else "Every team",
    }


async def _team_page(
    request: Request, session: Session, *, status: int = 200, alerts: Sequence[str] = ()
) -> Response:
    context = await _team(request, session)
    title = context.pop("team_title")
    return render_page(
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
        return to_sign_in(here(request))
    if not session.manages:
        return refusal(request, NotAManager(), session, title="Managers only")
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
    return render_page(request, "_team_rows.html", session=session, **context)


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
        return to_sign_in("/inbox/team")
    if not session.manages:
        return refusal(request, NotAManager(), session, title="Managers only")
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
                await decisions.reassign(conn, handoff_id, session.principal, to, now=utc_now())
            moved += 1
        except DomainError as refused:
            failures.append((handoff_id, refused))
    if not failures:
        return RedirectResponse(f"/inbox/team?notice=reassigned&count={moved}", status_code=303)
    alerts = [f"Reassigned {moved}." if moved else "Nothing was reassigned."]
    async with runtime_of(request).pool.acquire() as conn:
        for handoff_id, failure in failures:
            found = await store.get_handoff(conn, handoff_id)
            if found is not None:
                [found] = await people.opened(conn, keyring_of(request), [found])
            alerts.append(f"{pages.lead_name(found) if found else handoff_id}: {failure}")
    return await _team_page(request, session, status=failures[0][1].status, alerts=alerts)
