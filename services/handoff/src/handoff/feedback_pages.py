"""The feedback page (``/inbox/feedback``) and its export, in the inbox's session: what
marketing sees of the leads sales sent back, breached, won or lost. The list and its
filters are the API's (``feedback_api.py``); what it holds, ``feedback.py``."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from funnel_common.http import DomainError
from funnel_common.service import runtime_of
from handoff import feedback, feedback_api, feedback_store
from handoff import inbox_session as sessions
from handoff.feedback import FeedbackQuery
from handoff.inbox_pages import REASON_CHOICES, reason_text
from handoff.inbox_render import here, refusal, render_page, to_sign_in
from handoff.settings import HandoffSettings

_FIELDS = ("period", "source", "campaign", "form", "reason", "team", "outcome")


def _query(request: Request) -> FeedbackQuery:
    """The page's filters from its GET form: a field left empty filters nothing."""
    chosen = {
        name: value.strip()
        for name, value in request.query_params.items()
        if name in (*_FIELDS, "page") and value.strip()
    }
    return FeedbackQuery.model_validate(chosen)


def _invalid(error: ValidationError) -> DomainError:
    fields = ", ".join(str(problem["loc"][0]) for problem in error.errors() if problem["loc"])
    return sessions.FormInvalid(f"Check the filters: {fields or 'the form'}.")


def router(settings: HandoffSettings) -> APIRouter:
    routes = APIRouter(prefix="/inbox", include_in_schema=False)

    @routes.get("/feedback")
    async def feedback_page(request: Request) -> Response:
        session = await sessions.session_of(request)
        if session is None:
            return to_sign_in(here(request))
        try:
            query = _query(request)
        except ValidationError as error:
            return refusal(request, _invalid(error), session, title="Feedback from sales")
        try:
            async with runtime_of(request).pool.acquire() as conn:
                found = await feedback_api.read_page(
                    conn, query, session.principal, settings.common
                )
                choices = await feedback_store.filter_choices(conn)
        except DomainError as refused:
            return refusal(request, refused, session, title="Feedback from sales")
        chosen = {name: getattr(query, name) for name in _FIELDS}
        filtered = urlencode({name: str(value) for name, value in chosen.items() if value})
        manager_team = session.principal.team if session.principal.role == "manager" else None
        return render_page(
            request,
            "feedback.html",
            session=session,
            title="Feedback from sales",
            current="feedback",
            found=found,
            chosen=chosen,
            filtered=bool(filtered),
            choices=choices,
            manager_team=manager_team,
            outcomes=feedback.OUTCOMES,
            reason_choices=REASON_CHOICES,
            reason_text=reason_text,
            export_href="/inbox/feedback.csv" + (f"?{filtered}" if filtered else ""),
            page_href="/inbox/feedback?" + (f"{filtered}&" if filtered else ""),
        )

    @routes.get("/feedback.csv")
    async def feedback_export(request: Request) -> Response:
        session = await sessions.session_of(request)
        if session is None:
            return to_sign_in("/inbox/feedback")
        try:
            query = _query(request)
            filters = feedback.filters_of(
                query, session.principal, settings.common.reporting_timezone
            )
            return await feedback_api.export(request, filters, settings)
        except ValidationError as error:
            return refusal(request, _invalid(error), session, title="Feedback from sales")
        except DomainError as refused:
            return refusal(request, refused, session, title="Feedback from sales")

    return routes
