"""The review pack for people: ``/review?week=YYYY-Www`` (server-rendered, printable,
for anyone with a token) and ``GET /v1/review?week=`` (the same, as JSON).

A week whose pack was sent shows it as it was sent, with the example notes read now.
The current or a coming week shows a preview made from the figures of this moment;
a past week with no pack (skipped, or before the first) is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import asyncpg
import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict

from funnel_common.auth import Principal, TokenFirstRoute, Unauthenticated, authenticate
from funnel_common.http import DomainError, NotFound, parse_form, problem_responses
from funnel_common.periods import WEEK_PATTERN, BadWeek, Week, parse_week, week_of_instant
from funnel_common.service import runtime_of
from funnel_common.types import utc_now
from metrics import review_messages, review_packs, review_store
from metrics import review_session as sessions
from metrics.review import ReviewPack
from metrics.review_worker import schedule_of
from metrics.settings import MetricsSettings

HERE = Path(__file__).parent
_HEADERS = {
    # The page holds the reps' notes: never cached, never framed.
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class InvalidWeek(DomainError):
    status = 422
    slug = "invalid-week"
    title = "The week must be an ISO week like 2026-W48"


class ReviewView(BaseModel):
    """A week's pack as shown: sent (as it was), or a preview of this moment's figures."""

    model_config = ConfigDict(frozen=True)

    status: Literal["sent", "preview"]
    pack: ReviewPack
    notes: dict[str, list[str]]
    """The latest notes of each top rejection reason, read now (they are never stored)."""


def _week(text: str | None, settings: MetricsSettings) -> Week:
    # Only an absent week means this week: an empty one is not a week (the documented
    # pattern refuses it, and so does the route; schemathesis' checks found it).
    if text is None:
        return week_of_instant(utc_now(), settings.common.reporting_timezone)
    try:
        return parse_week(text)
    except BadWeek as error:
        raise InvalidWeek(
            str(error), errors=[{"field": "week", "message": str(error), "code": "invalid_week"}]
        ) from error


async def read_view(
    connection: asyncpg.Connection, week: Week, settings: MetricsSettings
) -> ReviewView:
    """The week's pack as sent, or a preview for the current or a coming week."""
    now = utc_now()
    pack = await review_store.pack_of(connection, week)
    status: Literal["sent", "preview"] = "sent"
    if pack is None:
        if week < week_of_instant(now, settings.common.reporting_timezone):
            raise NotFound(f"no review pack was sent for {week}")
        status = "preview"
        due_at = schedule_of(settings).due_at(week)
        pack = await review_packs.prepare(
            connection, settings, week=week, due_at=due_at, now=now, late=False
        )
    notes = await review_packs.notes_for(connection, pack, settings)
    return ReviewView(status=status, pack=pack, notes=notes)


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["money"] = review_messages.money
    environment.filters["ratio"] = review_messages.ratio
    environment.filters["percent"] = review_messages.percent
    environment.filters["whole"] = review_messages.whole
    environment.filters["utc"] = lambda moment: moment.astimezone(UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    environment.filters["iso"] = lambda moment: moment.astimezone(UTC).isoformat()
    environment.globals["signed"] = review_messages.signed
    environment.globals["shown"] = review_messages.shown
    environment.globals["reason_text"] = review_messages.reason_text
    return Jinja2Templates(env=environment)


TEMPLATES = _templates()


def _page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(
        request, template, {"alerts": [], **context}, status_code=status, headers=_HEADERS
    )


def _to_sign_in(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/sign-in?next={quote(here, safe='/')}", status_code=303)


def routers(settings: MetricsSettings) -> list[APIRouter]:
    """The page's routes (``/review``) and the JSON route (``/v1/review``)."""
    pages = APIRouter(prefix="/review", include_in_schema=False)
    # TokenFirstRoute: no body is read before the token is checked.
    api = APIRouter(prefix="/v1", tags=["review"], route_class=TokenFirstRoute)

    @pages.get("/static/review.css")
    async def stylesheet() -> Response:
        return FileResponse(
            HERE / "static" / "review.css",
            media_type="text/css",
            headers={"Cache-Control": "max-age=300"},
        )

    def sign_in_form(
        request: Request, *, next_path: str, status: int = 200, alerts: list[str] | None = None
    ) -> Response:
        nonce = sessions.new_nonce()
        response = _page(
            request,
            "sign_in.html",
            status=status,
            title="Sign in to the review",
            next=next_path,
            alerts=alerts or [],
            nonce=nonce,
        )
        sessions.set_nonce(response, request, nonce)
        return response

    @pages.get("/sign-in")
    async def sign_in_page(request: Request) -> Response:
        return sign_in_form(request, next_path=sessions.safe_next(request.query_params.get("next")))

    @pages.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        try:
            form = parse_form(await request.body(), max_fields=sessions.MAX_FORM_FIELDS)
        except DomainError as refused:
            return sign_in_form(
                request, next_path="/review", status=refused.status, alerts=[str(refused)]
            )
        sent = {name: values[0] for name, values in form.items() if values}
        next_path = sessions.safe_next(sent.get("next"))
        if not sessions.nonce_matches(request, sent.get("csrf", "")):
            alerts = ["The form is stale or did not come from this page; try again."]
            return sign_in_form(request, next_path=next_path, status=403, alerts=alerts)
        token = sent.get("token", "").strip()
        try:
            principal = await sessions.principal_of(request, token)
        except Unauthenticated:
            alerts = ["That token was not accepted."]
            return sign_in_form(request, next_path=next_path, status=401, alerts=alerts)
        response = RedirectResponse(next_path, status_code=303)
        sessions.set_session(response, request, token, principal)
        return response

    @pages.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        reader = await sessions.reader_of(request)
        if reader is None:
            return RedirectResponse("/review/sign-in", status_code=303)
        try:
            form = parse_form(await request.body(), max_fields=sessions.MAX_FORM_FIELDS)
        except DomainError:
            form = {}
        if not sessions.csrf_matches(reader, (form.get("csrf") or [""])[0]):
            return _page(
                request,
                "refused.html",
                status=403,
                title="Not signed out",
                alerts=["The form is stale or did not come from this page; reload and try again."],
                reader=reader,
            )
        response = RedirectResponse("/review/sign-in", status_code=303)
        sessions.clear_session(response, request)
        return response

    @pages.get("")
    async def review_page(request: Request) -> Response:
        reader = await sessions.reader_of(request)
        if reader is None:
            return _to_sign_in(request)
        try:
            week = _week(request.query_params.get("week"), settings)
            async with runtime_of(request).pool.acquire() as connection:
                view = await read_view(connection, week, settings)
                deliveries = await review_store.deliveries_of(connection, str(week))
        except DomainError as refused:
            return _page(
                request,
                "refused.html",
                status=refused.status,
                title="No review pack",
                alerts=[str(refused)],
                reader=reader,
                week=request.query_params.get("week") or "",
            )
        return _page(
            request,
            "review.html",
            title=review_messages.title(view.pack),
            view=view,
            pack=view.pack,
            reader=reader,
            deliveries=deliveries,
            previous_week=str(week.shifted(-1)),
            next_week=str(week.shifted(1)),
            generated=datetime.now(UTC),
        )

    @api.get(
        "/review",
        summary="A week's review pack (any token): as sent, or a preview of this week's",
        responses={
            **problem_responses(401, 422, 503),
            404: {"description": "No pack was sent for that past week"},
        },
    )
    async def review_json(
        request: Request,
        principal: Annotated[Principal, Depends(authenticate)],
        week: Annotated[
            str | None,
            Query(
                description="ISO week YYYY-Www in the reporting time zone; default: this week.",
                json_schema_extra={"pattern": WEEK_PATTERN},
            ),
        ] = None,
    ) -> ReviewView:
        async with runtime_of(request).pool.acquire() as connection:
            return await read_view(connection, _week(week, settings), settings)

    return [pages, api]
