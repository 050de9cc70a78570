"""``GET /v1/campaigns`` and ``GET /v1/campaigns.csv``: what each campaign earned in a
quarter, read by the same code as ``/v1/funnel`` (``report.read_campaigns``). Open like
``/v1/funnel``: figures, no personal data.

No ``from __future__ import annotations`` here: FastAPI must see the query types as
objects (see api.py).
"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from funnel_common.http import problem_responses
from funnel_common.service import Transaction
from funnel_common.spreadsheet import csv_response, csv_stream
from funnel_common.types import utc_now
from metrics import campaigns, report
from metrics.api import PeriodQuery, resolve_period
from metrics.campaigns import CampaignsDocument, Order, SortKey
from metrics.settings import MetricsSettings

SortQuery = Annotated[
    SortKey, Query(description="The column to sort by; rows without a value come last.")
]
OrderQuery = Annotated[Order, Query(description="`desc` (default) or `asc`.")]


def router(settings: MetricsSettings) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["campaigns"])

    async def read(
        conn: Transaction, period: str | None, sort: SortKey, order: Order
    ) -> CampaignsDocument:
        wanted = resolve_period(period, settings, "period")
        _, rows = await report.read_campaigns(conn, wanted, settings, now=utc_now())
        return CampaignsDocument(
            period=str(wanted),
            currency=settings.common.reporting_currency,
            sort=sort,
            order=order,
            items=campaigns.sorted_rows(rows, sort, order),
        )

    @routes.get(
        "/campaigns",
        summary="Each source and campaign's funnel, revenue, win rate and SLA for a quarter",
        description="Per source and campaign: the quarter's cohort funnel (captured → "
        "qualified → accepted → opened → won, counts and conversion), deals won and lost "
        "in the quarter with their value and win rate, the median business time to accept, "
        "SLA attainment and the top three rejection reasons. Every figure is the campaign's "
        "slice of `/v1/funnel`'s.",
        responses=problem_responses(422, 503),
    )
    async def get_campaigns(
        conn: Transaction,
        period: PeriodQuery = None,
        sort: SortQuery = "won_value_cents",
        order: OrderQuery = "desc",
    ) -> CampaignsDocument:
        return await read(conn, period, sort, order)

    @routes.get(
        "/campaigns.csv",
        summary="The same rows as CSV, for a spreadsheet",
        description="Text cells a spreadsheet would run as a formula start with `'`.",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "The CSV file"},
            **problem_responses(422, 503),
        },
    )
    async def get_campaigns_csv(
        conn: Transaction,
        period: PeriodQuery = None,
        sort: SortQuery = "won_value_cents",
        order: OrderQuery = "desc",
    ) -> StreamingResponse:
        document = await read(conn, period, sort, order)
        lines = csv_stream(campaigns.CSV_HEADER, map(campaigns.csv_row, document.items))
        return csv_response(f"campaigns-{document.period}.csv", lines)

    return routes
