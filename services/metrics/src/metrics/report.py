"""Reads the facts a figure needs (via store.py) and hands them to the pure figures.

Shared by the JSON API and the Prometheus exposition, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from metrics import figures, store
from metrics.periods import Period
from metrics.settings import MetricsSettings


@dataclass(frozen=True)
class Funnel:
    by_source: dict[figures.SourceKey, figures.StageCounts]
    total: figures.StageCounts
    sla_breaches: int
    accept_seconds: figures.Histogram


async def read_figures(
    connection: asyncpg.Connection, periods: list[Period], settings: MetricsSettings
) -> tuple[Funnel, list[figures.PeriodFigures]]:
    """The funnel and each period's figures, read in one statement (so one snapshot,
    without a transaction of the caller's)."""
    bounds = []
    for period in periods:
        start, end = period.bounds(settings.common.reporting_timezone)
        bounds.append(
            store.PeriodBounds(
                str(period), period.first_day(), period.shifted(1).first_day(), start, end
            )
        )
    facts = await store.figure_facts(connection, bounds)
    by_source = figures.stage_counts(
        facts["lead_stages"], facts["handoff_decisions"], facts["deals"]
    )
    funnel = Funnel(
        by_source=by_source,
        total=figures.total(by_source),
        sla_breaches=facts["sla_breaches"],
        accept_seconds=figures.histogram(facts["accept_seconds"], settings.accept_seconds_buckets),
    )
    return funnel, [
        figures.period_figures(
            period=period["period"],
            target_cents=period["target_cents"],
            closed=figures.ClosedDeals.of(period["closed"]),
            open_by_stage={row["stage"]: row["value_cents"] for row in period["open"]},
            cohort=[
                figures.AccountAcross(
                    row["start_arr_cents"], row["end_active"], row["end_arr_cents"]
                )
                for row in period["cohort"]
            ],
            history=funnel.total,
            probabilities=settings.stage_probabilities,
            default_probability_percent=settings.default_stage_probability,
            healthy_coverage_ratio=settings.healthy_coverage_ratio,
        )
        for period in facts["periods"]
    ]


async def read_report(
    connection: asyncpg.Connection, period: Period, settings: MetricsSettings
) -> tuple[Funnel, figures.PeriodFigures]:
    """Everything ``GET /v1/funnel`` shows, read in one snapshot."""
    funnel, (figures_of_period,) = await read_figures(connection, [period], settings)
    return funnel, figures_of_period


def funnel_json(
    funnel: Funnel, period: figures.PeriodFigures, settings: MetricsSettings
) -> dict[str, Any]:
    """The ``GET /v1/funnel`` document."""
    return {
        "period": period.period,
        "currency": settings.common.reporting_currency,
        "stages": {
            "total": funnel.total.as_json(),
            "by_source": [
                {"source": source, "campaign": campaign or None, **counts.as_json()}
                for (source, campaign), counts in sorted(funnel.by_source.items())
            ],
        },
        "handoffs": {
            "accepted": funnel.total.accepted,
            "rejected": funnel.total.rejected,
            "rejected_by_reason": funnel.total.as_json()["rejected_by_reason"],
            "decided": funnel.total.decided,
            "within_sla": funnel.total.within_sla,
            "sla_attainment_ratio": funnel.total.sla_attainment(),
            "sla_breaches": funnel.sla_breaches,
            "accept_seconds": {
                "count": funnel.accept_seconds.count,
                "sum": funnel.accept_seconds.sum,
                "buckets": {
                    ("+Inf" if bound == figures.INF else repr(float(bound))): count
                    for bound, count in funnel.accept_seconds.buckets
                },
            },
        },
        "revenue": period.as_json(),
        "retention": period.retention.as_json(),
        "plan": period.plan.as_json(),
    }


async def read_snapshot(
    connection: asyncpg.Connection, periods: list[Period], settings: MetricsSettings
) -> dict[str, dict[str, Any]]:
    """The funnel document of each period: what replay compares, live against rebuilt."""
    funnel, period_figures = await read_figures(connection, periods, settings)
    return {figure.period: funnel_json(funnel, figure, settings) for figure in period_figures}
