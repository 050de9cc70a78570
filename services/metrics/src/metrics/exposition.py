"""Funnel figures for Prometheus, read from the projections on every scrape.

Replicas: each replica exports the GLOBAL figures (they are computed from the shared
projection tables, not from what this replica consumed), so a dashboard or alert takes
``max()`` across replicas, never ``sum()``. The answer is the same with one replica or
three, during a rebalance, and right after a restart (nothing lives in memory).

Labels are bounded: ``period`` only for a window of quarters around the current one
(settings ``periods_before``/``periods_after``), ``source`` only for the configured
allow-list (everything else is "other"), ``reason`` and ``outcome`` from the catalogue's
fixed sets. Campaigns, reps and leads are never labels; campaigns are in the JSON API.
Money is in cents of the reporting currency.

The ``_total`` series are counters rebuilt from facts, not incremented: if a late event
moves a deal from won back to open (its latest state by event time), won goes down by
one. That is the truth as now known; ``rate()`` treats it as a reset, so dashboards
show these as totals (``max()``) rather than rates.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from funnel_common.events import REJECTION_REASONS
from funnel_common.service import ExtraMetrics, Runtime
from funnel_common.types import utc_now
from metrics import figures, report
from metrics.periods import exported_periods, parse_period
from metrics.settings import MetricsSettings


class _Snapshot(Collector):
    """Serves metric families computed before the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def funnel_families(
    funnel: report.Funnel, periods: list[figures.PeriodFigures], settings: MetricsSettings
) -> list[Metric]:
    """The Prometheus families of the funnel figures (pure: figures in, families out)."""
    total = funnel.total
    captured = CounterMetricFamily(
        "funnel_leads_captured", "Leads captured (new leads, not merged duplicates)."
    )
    captured.add_metric([], total.captured)
    qualified = CounterMetricFamily("funnel_leads_qualified", "Leads qualified (MQL).")
    qualified.add_metric([], total.qualified)
    stages = CounterMetricFamily(
        "funnel_stage_reached",
        "Leads, handoffs and deals that reached a stage, by lead source "
        "(configured sources; the rest as other).",
        labels=["stage", "source"],
    )
    for source, counts in sorted(
        figures.bounded_sources(funnel.by_source, settings.sources).items()
    ):
        for stage in figures.STAGES:
            stages.add_metric([stage, source], getattr(counts, stage))
    handoffs = CounterMetricFamily(
        "funnel_handoffs", "Handoffs decided by a rep, by outcome.", labels=["outcome"]
    )
    handoffs.add_metric(["accepted"], total.accepted)
    handoffs.add_metric(["rejected"], total.rejected)
    rejections = CounterMetricFamily(
        "funnel_handoff_rejections", "Handoffs rejected, by reason.", labels=["reason"]
    )
    for reason in REJECTION_REASONS:
        rejections.add_metric([reason], total.rejected_by_reason.get(reason, 0))
    breaches = CounterMetricFamily("funnel_handoff_sla_breaches", "Handoff SLA deadlines missed.")
    breaches.add_metric([], funnel.sla_breaches)
    attainment = GaugeMetricFamily(
        "funnel_handoff_sla_attainment_ratio",
        "Handoffs decided within their SLA / handoffs decided.",
    )
    if (sla := total.sla_attainment()) is not None:
        attainment.add_metric([], sla)
    accept = HistogramMetricFamily(
        "funnel_handoff_accept_seconds",
        "Business seconds from handoff to acceptance.",
        buckets=[
            ("+Inf" if bound == figures.INF else repr(float(bound)), count)
            for bound, count in funnel.accept_seconds.buckets
        ],
        sum_value=funnel.accept_seconds.sum,
    )
    closed = CounterMetricFamily(
        "funnel_deals_closed", "Deals closed, by outcome (latest state).", labels=["outcome"]
    )
    closed.add_metric(["won"], total.won)
    closed.add_metric(["lost"], total.lost)
    healthy = GaugeMetricFamily(
        "funnel_pipeline_coverage_healthy_ratio",
        "Coverage at or above this is healthy (setting).",
    )
    healthy.add_metric([], settings.healthy_coverage_ratio)

    def per_period(name: str, documentation: str, *extra: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=["period", *extra])

    open_value = per_period(
        "funnel_pipeline_open_value", "Open deals expected to close in the period, cents."
    )
    target = per_period("funnel_revenue_target", "Revenue target of the period, cents.")
    won_value = per_period("funnel_won_value", "Value of deals won in the period, cents.")
    coverage = per_period(
        "funnel_pipeline_coverage_ratio", "Open pipeline / (target - won); +Inf when met."
    )
    win_rate = per_period(
        "funnel_win_rate_ratio", "Won / (won + lost) among deals closed in the period.", "basis"
    )
    retention = per_period(
        "funnel_retention_ratio", "Retention of the period's starting cohort.", "kind"
    )
    forecast = per_period(
        "funnel_forecast_weighted_value", "Open amount x stage probability, cents."
    )
    leads_needed = per_period(
        "funnel_plan_leads_needed", "Leads still needed to reach the remaining target."
    )
    pipeline_needed = per_period(
        "funnel_plan_pipeline_needed_value",
        "Pipeline still needed beyond the open one to reach the remaining target, cents.",
    )
    # Lets an alert or a panel tell a quarter under way from one that is over (its
    # coverage stays frozen below the band forever) without parsing the label.
    period_end = per_period(
        "funnel_period_end_timestamp_seconds",
        "End of the period in the reporting time zone, Unix seconds.",
    )
    for figure in periods:
        label = [figure.period]
        _, end = parse_period(figure.period).bounds(settings.common.reporting_timezone)
        period_end.add_metric(label, end.timestamp())
        open_value.add_metric(label, figure.open_pipeline_cents)
        won_value.add_metric(label, figure.closed.won_value_cents)
        forecast.add_metric(label, figure.weighted_forecast_cents)
        if figure.target_cents is not None:
            target.add_metric(label, figure.target_cents)
        if figure.coverage_ratio is not None:
            coverage.add_metric(label, figure.coverage_ratio)
        for basis, value in (
            ("count", figure.closed.win_rate_by_count()),
            ("value", figure.closed.win_rate_by_value()),
        ):
            if value is not None:
                win_rate.add_metric([*label, basis], value)
        for kind, value in (
            ("gross", figure.retention.gross),
            ("net", figure.retention.net),
            ("logo", figure.retention.logo),
        ):
            if value is not None:
                retention.add_metric([*label, kind], value)
        if figure.plan.leads_needed is not None:
            leads_needed.add_metric(label, figure.plan.leads_needed)
        if figure.plan.pipeline_still_needed_cents is not None:
            pipeline_needed.add_metric(label, figure.plan.pipeline_still_needed_cents)
    return [
        captured,
        qualified,
        stages,
        handoffs,
        rejections,
        breaches,
        attainment,
        accept,
        closed,
        healthy,
        open_value,
        target,
        won_value,
        coverage,
        win_rate,
        retention,
        forecast,
        leads_needed,
        pipeline_needed,
        period_end,
    ]


def renderer(settings: MetricsSettings) -> ExtraMetrics:
    async def render(runtime: Runtime) -> bytes:
        periods = exported_periods(
            utc_now(),
            settings.common.reporting_timezone,
            before=settings.periods_before,
            after=settings.periods_after,
        )
        async with runtime.pool.acquire() as connection:
            funnel, period_figures = await report.read_figures(connection, periods, settings)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(funnel_families(funnel, period_figures, settings)))
        return generate_latest(registry)

    return render
