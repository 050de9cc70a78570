"""Reads the facts a figure needs (via store.py) and hands them to the pure figures.

Shared by the JSON API and the Prometheus exposition, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

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


async def read_funnel(connection: asyncpg.Connection, settings: MetricsSettings) -> Funnel:
    by_source = figures.stage_counts(
        await store.lead_stage_counts(connection),
        await store.handoff_decision_counts(connection),
        await store.deal_counts(connection),
    )
    return Funnel(
        by_source=by_source,
        total=figures.total(by_source),
        sla_breaches=await store.sla_breach_count(connection),
        accept_seconds=figures.histogram(
            await store.accept_seconds(connection), settings.accept_seconds_buckets
        ),
    )


async def read_periods(
    connection: asyncpg.Connection,
    periods: list[Period],
    history: figures.StageCounts,
    settings: MetricsSettings,
) -> list[figures.PeriodFigures]:
    targets = await store.targets_of(connection, [str(period) for period in periods])
    result = []
    for period in periods:
        first, after_last = period.first_day(), period.shifted(1).first_day()
        start, end = period.bounds(settings.common.reporting_timezone)
        closed = await store.closed_deals_between(connection, first, after_last)
        open_rows = await store.open_pipeline_between(connection, first, after_last)
        cohort = await store.accounts_across(connection, start, end)
        result.append(
            figures.period_figures(
                period=str(period),
                target_cents=targets.get(str(period)),
                closed=figures.ClosedDeals.of(closed),
                open_by_stage={row["stage"]: row["value_cents"] for row in open_rows},
                cohort=[
                    figures.AccountAcross(
                        row["start_arr_cents"], row["end_active"], row["end_arr_cents"]
                    )
                    for row in cohort
                ],
                history=history,
                probabilities=settings.stage_probabilities,
                default_probability_percent=settings.default_stage_probability,
                healthy_coverage_ratio=settings.healthy_coverage_ratio,
            )
        )
    return result


async def read_report(
    connection: asyncpg.Connection, period: Period, settings: MetricsSettings
) -> tuple[Funnel, figures.PeriodFigures]:
    """Everything ``GET /v1/funnel`` shows, read in one snapshot (the caller's transaction)."""
    funnel = await read_funnel(connection, settings)
    (figures_of_period,) = await read_periods(connection, [period], funnel.total, settings)
    return funnel, figures_of_period
