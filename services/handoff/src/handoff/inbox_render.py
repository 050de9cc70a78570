"""How inbox pages are rendered and what they load: templates, headers, redirects, cards.

Shared by the rep's pages (``inbox.py``) and the manager's (``inbox_team.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import asyncpg
import jinja2
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from funnel_common.auth import Principal
from funnel_common.http import DomainError
from funnel_common.personal import Keyring
from funnel_common.service import runtime_of
from handoff import inbox_pages as pages
from handoff import inbox_session as sessions
from handoff import inbox_urgency as urgency
from handoff import people, store
from handoff.inbox_pages import Session
from handoff.models import InboxHandoff, Rep
from handoff.routing import UNROUTED_TEAM

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
    environment.filters["utc"] = urgency.utc_text
    environment.globals["reasons"] = pages.REASON_CHOICES
    return Jinja2Templates(env=environment)


TEMPLATES = _templates()


# --- rendering ------------------------------------------------------------------------


def _notice(request: Request) -> str:
    name = request.query_params.get("notice", "")
    count = pages.page_number(request.query_params.get("count"))
    if name == "reassigned" and count > 1:
        return f"Reassigned {count} handoffs."
    return _NOTICES.get(name, "")


def render_page(
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


def to_sign_in(next_path: str | None = None) -> Response:
    target = "/inbox/sign-in"
    if sessions.safe_next(next_path) and next_path != "/inbox":
        target += f"?next={quote(str(next_path), safe='/')}"
    return RedirectResponse(target, status_code=303)


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def refusal(
    request: Request, refused: DomainError, session: Session, *, title: str | None = None
) -> Response:
    titles = {403: "Not yours", 404: "No such handoff", 409: "Too late"}
    return render_page(
        request,
        "refused.html",
        session=session,
        title=title or titles.get(refused.status, "Refused"),
        status=refused.status,
        alerts=[str(refused)],
    )


# --- loading what pages show ---------------------------------------------------------


def keyring_of(request: Request) -> Keyring:
    """What opens the leads' sealed data for the page (people.py)."""
    return people.keyring_for(runtime_of(request).settings)


async def reps_for(conn: asyncpg.Connection, principal: Principal) -> list[Rep]:
    """Whom the caller may hand work to."""
    if principal.role == "manager" and principal.team:
        return await store.list_reps(conn, principal.team)
    if principal.role == "admin":
        return await store.list_reps(conn, None)
    return []


async def waiting_reasons(
    conn: asyncpg.Connection, items: Sequence[InboxHandoff], now: datetime
) -> dict[UUID, str]:
    queued = [item.handoff for item in items if item.handoff.status == "queued"]
    teams = {handoff.team_id for handoff in queued} - {UNROUTED_TEAM}
    states = {team: await store.rep_states(conn, team) for team in teams}
    return {
        handoff.handoff_id: urgency.why_waiting(handoff, states.get(handoff.team_id, []), now)
        for handoff in queued
    }


async def load_cards(
    conn: asyncpg.Connection,
    session: Session,
    items: Sequence[InboxHandoff],
    now: datetime,
    keyring: Keyring,
) -> list[pages.Card]:
    """The cards of ``items``, the leads' sealed data opened to be shown."""
    items = await people.opened_items(conn, keyring, items)
    reps = await reps_for(conn, session.principal)
    reasons = await waiting_reasons(conn, items, now) if session.manages else {}
    return [
        pages.card(
            item, session, now, reps=reps, waiting_reason=reasons.get(item.handoff.handoff_id)
        )
        for item in urgency.by_urgency(items, now)
    ]
