"""Reads the facts a figure needs (via store.py) and hands them to the pure figures.

Shared by the JSON API and the Prometheus exposition, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from funnel_common.periods import Period
from metrics import campaigns, documents, figures, store
from metrics.settings import MetricsSettings


@dataclass(frozen=True)
class Funnel:
    """Everything so far: the all-time view, and what counters count."""

    all_time: figures.WindowFigures
    reopens: int
    closings: dict[str, int]
    """How many times deals became won and lost (``won``, ``lost``), reopens or not."""


async def read_figures(
    connection: asyncpg.Connection,
    periods: list[Period],
    settings: MetricsSettings,
    *,
    now: datetime,
    all_time_cohort: bool = False,
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
    facts = await store.figure_facts(
        connection,
        bounds,
        now=now,
        all_time_cohort=all_time_cohort,
        accept_seconds_bounds=settings.accept_seconds_buckets,
    )
    buckets = settings.accept_seconds_buckets
    funnel = Funnel(
        all_time=_window(facts, facts["all_time_cohort"] or [], None, buckets),
        reopens=facts["reopens"],
        closings=facts["closings"],
    )
    started = set(facts["started"])
    return funnel, [
        figures.period_figures(
            period=str(period),
            window=_window(facts, facts["cohort"], str(period), buckets),
            target_cents=facts["targets"].get(str(period)),
            open_by_stage={
                row["stage"]: row["value_cents"]
                for row in facts["open"]
                if row["period"] == str(period)
            },
            cohort=[
                figures.AccountAcross(
                    row["start_arr_cents"], row["end_active"], row["end_arr_cents"]
                )
                for row in facts["accounts"]
                if row["period"] == str(period)
            ]
            if str(period) in started
            else None,
            history=funnel.all_time.total,
            probabilities=settings.stage_probabilities,
            default_probability_percent=settings.default_stage_probability,
            healthy_coverage_ratio=settings.healthy_coverage_ratio,
        )
        for period in periods
    ]


def _window(
    facts: dict[str, Any],
    cohort: list[dict[str, Any]],
    period: str | None,
    buckets: list[float],
) -> figures.WindowFigures:
    """One quarter's figures from the store's rows, or (``period`` None) all time's:
    every row, whichever quarter it fell in."""

    def rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return found if period is None else [row for row in found if row["period"] == period]

    breaches: dict[str, int] = {}
    for row in rows(facts["breaches"]):
        breaches[row["policy"]] = breaches.get(row["policy"], 0) + row["breaches"]
    return figures.window_figures(
        stage_rows=rows(facts["stages"]),
        cohort_rows=cohort if period is None else rows(cohort),
        sla_rows=rows(facts["sla"]),
        breaches_by_policy=dict(sorted(breaches.items())),
        escalations=sum(row["escalations"] for row in rows(facts["escalations"])),
        accept_rows=rows(facts["accept_seconds"]),
        accept_seconds_buckets=buckets,
    )


def _view(window: figures.WindowFigures) -> documents.StageView:
    return documents.StageView(
        total=documents.StageFigures(**window.total.as_json()),
        by_source=[
            documents.SourceStageFigures(
                source=source, campaign=campaign or None, **counts.as_json()
            )
            for (source, campaign), counts in sorted(window.by_source.items())
        ],
    )


def _histogram(histogram: figures.Histogram) -> documents.Histogram:
    return documents.Histogram(
        count=histogram.count,
        sum=histogram.sum,
        buckets={
            ("+Inf" if bound == figures.INF else repr(float(bound))): count
            for bound, count in histogram.buckets
        },
    )


def _revenue(period: figures.PeriodFigures) -> documents.Revenue:
    coverage: float | str | None = period.coverage_ratio
    if coverage == figures.INF:
        coverage = "+Inf"  # JSON has no infinity; the Prometheus spelling
    closed = period.closed
    return documents.Revenue(
        target_cents=period.target_cents,
        won_value_cents=closed.won_value_cents,
        won=closed.won,
        lost=closed.lost,
        lost_value_cents=closed.lost_value_cents,
        open_pipeline_cents=period.open_pipeline_cents,
        remaining_target_cents=period.plan.remaining_cents,
        coverage_ratio=coverage,  # type: ignore[arg-type]
        healthy_coverage_ratio=period.healthy_coverage_ratio,
        coverage_healthy=None
        if period.coverage_ratio is None
        else period.coverage_ratio >= period.healthy_coverage_ratio,
        win_rate=documents.WinRate(
            count=period.win_rate_by_count(), value=period.win_rate_by_value()
        ),
        weighted_forecast_cents=period.weighted_forecast_cents,
    )


def funnel_document(
    funnel: Funnel, period: figures.PeriodFigures, settings: MetricsSettings
) -> documents.FunnelDocument:
    """The ``GET /v1/funnel`` document."""
    window, sla = period.window, period.window.sla
    return documents.FunnelDocument(
        period=period.period,
        currency=settings.common.reporting_currency,
        stages=documents.Stages(period=_view(window), all_time=_view(funnel.all_time)),
        handoffs=documents.Handoffs(
            accepted=window.total.accepted,
            rejected=window.total.rejected,
            decided=window.total.decided,
            rejected_by_reason=dict(sorted(window.total.rejected_by_reason.items())),
            sla=documents.Sla(
                deadlines=sla.deadlines,
                met=sla.met,
                missed=sla.missed,
                attainment_ratio=sla.attainment,
                breaches=sla.breaches,
                breaches_by_policy=sla.breaches_by_policy,
                escalations=sla.escalations,
            ),
            accept_seconds=_histogram(window.accept_seconds),
        ),
        revenue=_revenue(period),
        retention=None
        if period.retention is None
        else documents.Retention(**period.retention.as_json()),
        plan=documents.PlanFigures(**period.plan.as_json()),
    )


def plan_document(
    period: figures.PeriodFigures, settings: MetricsSettings
) -> documents.PlanDocument:
    """The ``GET /v1/plan`` document."""
    return documents.PlanDocument(
        period=period.period,
        currency=settings.common.reporting_currency,
        **period.plan.as_json(),
    )


async def read_campaigns(
    connection: asyncpg.Connection, period: Period, settings: MetricsSettings, *, now: datetime
) -> tuple[figures.PeriodFigures, list[campaigns.CampaignRow]]:
    """The quarter's figures and each campaign's slice of them (``campaigns.py``)."""
    _, (found,) = await read_figures(connection, [period], settings, now=now)
    start, end = period.bounds(settings.common.reporting_timezone)
    accepted = await store.accept_seconds_by_source(connection, start, end)
    return found, campaigns.rows(found.window, accepted)


async def read_snapshot(
    connection: asyncpg.Connection,
    periods: list[Period],
    settings: MetricsSettings,
    *,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """The funnel document of each period: what replay compares, live against rebuilt."""
    funnel, period_figures = await read_figures(
        connection, periods, settings, now=now, all_time_cohort=True
    )
    return {
        figure.period: funnel_document(funnel, figure, settings).model_dump(mode="json")
        for figure in period_figures
    }
