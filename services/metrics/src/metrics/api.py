"""Routes: parse, authorise, read or record, render. The figures come from report.py.

No ``from __future__ import annotations`` here: FastAPI must see the dependencies
built inside ``router()`` as objects, not as names it cannot resolve.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from funnel_common.auth import Principal, require_role
from funnel_common.events import TargetSet
from funnel_common.http import DomainError
from funnel_common.outbox import enqueue
from funnel_common.service import Transaction
from funnel_common.types import Cents, CurrencyCode, utc_now
from metrics import report, store
from metrics.periods import BadPeriod, Period, parse_period, period_of_instant
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

    amount_cents: Cents = Field(description="The revenue target in cents (minor units).")
    currency: CurrencyCode | None = Field(
        default=None, description="Defaults to the reporting currency; any other is refused."
    )


def _period(text: str | None, settings: MetricsSettings, field: str) -> Period:
    if text is None:
        return period_of_instant(utc_now(), settings.common.reporting_timezone)
    try:
        return parse_period(text)
    except BadPeriod as error:
        raise InvalidPeriod(
            str(error),
            errors=[{"field": field, "message": str(error), "code": "invalid_period"}],
        ) from error


PeriodQuery = Annotated[
    str | None,
    Query(description="Calendar quarter YYYY-Qn in the reporting time zone; default: current."),
]


def router(settings: MetricsSettings) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["funnel"])

    # The company-wide target is an admin's, not any one team's manager's.
    may_set_targets = require_role("admin")

    @routes.get("/funnel", summary="Every funnel figure for a quarter")
    async def get_funnel(conn: Transaction, period: PeriodQuery = None) -> dict[str, Any]:
        wanted = _period(period, settings, "period")
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        funnel, figures = await report.read_report(conn, wanted, settings)
        return report.funnel_json(funnel, figures, settings)

    @routes.get("/plan", summary="The reverse funnel: what it takes to hit the target")
    async def get_plan(conn: Transaction, period: PeriodQuery = None) -> dict[str, Any]:
        wanted = _period(period, settings, "period")
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        _, figures = await report.read_report(conn, wanted, settings)
        return {
            "period": str(wanted),
            "currency": settings.common.reporting_currency,
            **figures.plan.as_json(),
        }

    @routes.put("/targets/{period}", summary="Set a quarter's revenue target (admin)")
    async def put_target(
        period: str,
        body: TargetIn,
        principal: Annotated[Principal, Depends(may_set_targets)],
        conn: Transaction,
    ) -> dict[str, Any]:
        wanted = _period(period, settings, "period")
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
        await store.record_target(
            conn,
            period=str(wanted),
            amount_cents=body.amount_cents,
            set_at=event.time,
            event_id=event.id,
        )
        await enqueue(conn, event)
        return {
            "period": str(wanted),
            "amount_cents": body.amount_cents,
            "currency": currency,
            "event_id": str(event.id),
        }

    return routes
