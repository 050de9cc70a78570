"""``GET /v1/feedback`` and ``GET /v1/feedback.csv``: sales' feedback on marketing's
leads, for a bearer token (marketing, a manager for their team, an admin). The page is
``feedback_pages.py``; what the list holds, ``feedback.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPBearer

from funnel_common import personal
from funnel_common.auth import Principal, TokenFirstRoute, authenticate
from funnel_common.http import problem_responses
from funnel_common.service import Transaction, runtime_of
from funnel_common.settings import CommonSettings
from funnel_common.spreadsheet import Cell, csv_response, csv_stream
from handoff import feedback, feedback_store, people
from handoff.feedback import FeedbackList, FeedbackQuery, Filters
from handoff.settings import HandoffSettings

_bearer_scheme = HTTPBearer(auto_error=False, description="A token from `POST /v1/tokens`")
Caller = Annotated[Principal, Depends(authenticate)]


async def read_page(
    connection: asyncpg.Connection,
    query: FeedbackQuery,
    principal: Principal,
    common: CommonSettings,
) -> FeedbackList:
    """The page the caller asks for, with the filters they get (shared with the page)."""
    filters = feedback.filters_of(query, principal, common.reporting_timezone)
    rows = await feedback_store.feedback_page(
        connection,
        filters,
        timezone=common.reporting_timezone,
        limit=query.limit + 1,
        offset=(query.page - 1) * query.limit,
    )
    ring = people.keyring_for(common)
    keys = await personal.load_keys(connection, ring, [row["lead_id"] for row in rows])
    return FeedbackList(
        items=[feedback.item_of(row, keys.get(row["lead_id"])) for row in rows[: query.limit]],
        page=query.page,
        limit=query.limit,
        has_next=len(rows) > query.limit,
        currency=common.reporting_currency,
    )


async def export(
    request: Request, filters: Filters, settings: HandoffSettings
) -> StreamingResponse:
    """The whole filtered list as CSV, streamed; refused (422) before anything is sent
    when it holds more rows than ``feedback_export_max_rows``."""
    pool = runtime_of(request).pool
    timezone = settings.common.reporting_timezone
    ring = people.keyring_for(settings.common)
    async with pool.acquire() as connection:
        rows = await feedback_store.count_feedback(connection, filters, timezone=timezone)
    feedback.check_export_size(rows, settings.feedback_export_max_rows)

    async def lines() -> AsyncIterator[list[Cell]]:
        # One snapshot for the whole file, read through a cursor as the client takes it.
        async with pool.acquire() as connection:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                async for row in feedback_store.each_feedback(
                    connection, filters, timezone=timezone, limit=settings.feedback_export_max_rows
                ):
                    # The note opens with the lead's key (gone once they were erased).
                    keys = await personal.load_keys(connection, ring, [row["lead_id"]])
                    yield feedback.csv_row(feedback.item_of(row, keys.get(row["lead_id"])))

    return csv_response("feedback.csv", csv_stream(feedback.CSV_HEADER, lines()))


def router(settings: HandoffSettings) -> APIRouter:
    routes = APIRouter(
        prefix="/v1",
        tags=["feedback"],
        route_class=TokenFirstRoute,  # no body is read before the token is checked
        dependencies=[Depends(_bearer_scheme)],
        responses=problem_responses(400, 401, 403, 422, 503),
    )

    @routes.get(
        "/feedback",
        summary="Rejected, breached, won and lost leads, newest first (marketing, manager, admin)",
        description="Each lead sales sent back (reason, the rep's note), whose SLA was "
        "breached, or whose deals were won or lost: when, which form and campaign, the rep, "
        "the score and its reasons. A manager sees their own team's.",
    )
    async def list_feedback(
        principal: Caller, conn: Transaction, query: Annotated[FeedbackQuery, Query()]
    ) -> FeedbackList:
        return await read_page(conn, query, principal, settings.common)

    @routes.get(
        "/feedback.csv",
        summary="The same list as CSV, streamed (marketing, manager, admin)",
        description="Every lead the filters select (no paging), at most "
        "`FUNNEL_HANDOFF_FEEDBACK_EXPORT_MAX_ROWS`; beyond that, a 422 `export-too-large` "
        "before anything is sent. Text cells a spreadsheet would run as a formula start "
        "with `'`.",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "The CSV file"}},
    )
    async def export_feedback(
        principal: Caller, request: Request, query: Annotated[FeedbackQuery, Query()]
    ) -> StreamingResponse:
        filters = feedback.filters_of(query, principal, settings.common.reporting_timezone)
        return await export(request, filters, settings)

    return routes
