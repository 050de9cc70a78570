"""Routes: parse, authorise, read or record, render. The figures come from report.py.

No ``from __future__ import annotations`` here: FastAPI must see the dependencies
built inside ``router()`` as objects, not as names it cannot resolve.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, Strict

from funnel_common.auth import Principal, TokenFirstRoute, require_role
from funnel_common.events import TargetSet
from funnel_common.http import DomainError, problem_responses
from funnel_common.outbox import enqueue
from funnel_common.periods import PATTERN, BadPeriod, Period, parse_period, period_of_instant
from funnel_common.service import Transaction
from funnel_common.types import Cents, CurrencyCode, utc_now
from metrics import facts, handlers, report
from metrics.documents import FunnelDocument, PlanDocument
from metrics.settings import MetricsSettings


class InvalidPeriod(DomainError):
    status = 422
    slug = "invalid-period"
    title = "The period must be a calendar quarter like 2026-Q3"


class WrongCurrency(DomainError):
    status = 422
    slug = "wrong-currency"
    title = "Amounts must be in the reporting currency"


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: JSON true or "100" is not an amount (lax mode would take 1 and 100).
    amount_cents: Annotated[Cents, Strict()] = Field(
        description="The revenue target in cents (minor units), a JSON integer."
    )
    currency: CurrencyCode | None = Field(
        default=None, description="Defaults to the reporting currency; any other is refused."
    )


def resolve_period(text: str | None, settings: MetricsSettings, field: str) -> Period:
    """The quarter asked for (the current one by default), or a 422 naming ``field``."""
    if text is None:
        return period_of_instant(utc_now(), settings.common.reporting_timezone)
    try:
        return parse_period(text)
    except BadPeriod as error:
        raise InvalidPeriod(
            str(error),
            errors=[{"field": field, "message": str(error), "code": "invalid_period"}],
        ) from error


_PERIOD_DOC = (
    "Calendar quarter YYYY-Qn in the reporting time zone, 1970-Q1 to 9998-Q4. "
    "Anything else is a 422 `invalid-period` problem."
)
# The pattern is documented, not enforced by FastAPI: parse_period answers with the
# precise problem (which part is wrong) that a generic validation error would not.
PeriodQuery = Annotated[
    str | None,
    Query(
        description=f"{_PERIOD_DOC} Default: the current quarter.",
        json_schema_extra={"pattern": PATTERN},
    ),
]
PeriodPath = Annotated[str, Path(description=_PERIOD_DOC, json_schema_extra={"pattern": PATTERN})]


def router(settings: MetricsSettings) -> APIRouter:
    # TokenFirstRoute: no body is read before the token is checked (PUT /v1/targets).
    routes = APIRouter(prefix="/v1", tags=["funnel"], route_class=TokenFirstRoute)

    # The company-wide target is an admin's, not any one team's manager's.
    may_set_targets = require_role("admin")

    @routes.get(
        "/funnel",
        summary="Every funnel figure for a quarter",
        responses=problem_responses(422, 503),
    )
    async def get_funnel(conn: Transaction, period: PeriodQuery = None) -> FunnelDocument:
        wanted = resolve_period(period, settings, "period")
        # The figures come from one statement: one snapshot without a transaction's
        # isolation level.
        funnel, (figures,) = await report.read_figures(
            conn, [wanted], settings, now=utc_now(), all_time_cohort=True
        )
        return report.funnel_document(funnel, figures, settings)

    @routes.get(
        "/plan",
        summary="The reverse funnel: what it takes to hit the target",
        responses=problem_responses(422, 503),
    )
    async def get_plan(conn: Transaction, period: PeriodQuery = None) -> PlanDocument:
        wanted = resolve_period(period, settings, "period")
        _, (figures,) = await report.read_figures(conn, [wanted], settings, now=utc_now())
        return report.plan_document(figures, settings)

    @routes.put(
        "/targets/{period}",
        summary="Set a quarter's revenue target (admin)",
        responses=problem_responses(400, 401, 403, 413, 422, 503),
    )
    async def put_target(
        period: PeriodPath,
        body: TargetIn,
        principal: Annotated[Principal, Depends(may_set_targets)],
        conn: Transaction,
    ) -> dict[str, Any]:
        wanted = resolve_period(period, settings, "period")
        currency = body.currency or settings.common.reporting_currency
        if currency != settings.common.reporting_currency:
            raise WrongCurrency(
                f"targets are in {settings.common.reporting_currency}",
                errors=[
                    {
                        "field": "currency",
                        "message": "not the reporting currency",
                        "code": "wrong_currency",
                    }
                ],
            )
        event = TargetSet.new(
            source="metrics",
            subject=str(wanted),
            data={
                "period": str(wanted),
                "amount_cents": body.amount_cents,
                "currency": currency,
                # The token's subject, not a name: who set it, without personal data.
                "set_by": principal.subject[:80],
            },
        )
        # The target is ours, but it is also an event: it goes to funnel.targets through
        # the outbox, so a replay of the topics rebuilds it, and our own consumer applying
        # it again is a no-op (same event id, same row).
        await handlers.record(conn, facts.target(event))
        await enqueue(conn, event)
        return {
            "period": str(wanted),
            "amount_cents": body.amount_cents,
            "currency": currency,
            "event_id": str(event.id),
        }

    return routes
