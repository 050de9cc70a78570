"""Funnel figures for Prometheus, read from the projections on every scrape.

Replicas: each replica exports the GLOBAL figures (they are computed from the shared
projection tables, not from what this replica consumed), so a dashboard or alert takes
``max()`` across replicas, never ``sum()``. The answer is the same with one replica or
three, during a rebalance, and right after a restart (nothing lives in memory).

Counters count only what never un-happens, so Prometheus never sees one go down (a
reset, which ``increase()`` would turn into invented events): a lead captured,
qualified or flagged as spam; a handoff decided (decisions are final); a response
deadline past, and met; a breach; an escalation; a deal opened; a deal reopened. A deal
won or lost is current state (a reopen undoes it), so deals closed are a gauge per
quarter, as is everything else about a quarter.

Labels are bounded: ``period`` only for a window of quarters around the current one
(settings ``periods_before``/``periods_after``), ``source`` only for the allow-list
(config/sources.yaml; everything else is "other"), ``reason``, ``outcome``, ``stage``
and ``basis``/``kind`` from fixed sets, ``policy`` from the SLA policies an admin
configured. Campaigns, reps and leads are never labels; campaigns are in the JSON API.
Money is in cents of the reporting currency.
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
from funnel_common.periods import exported_periods, parse_period
from funnel_common.service import ExtraMetrics, Runtime
from funnel_common.types import utc_now
from metrics import figures, report
from metrics.settings import MetricsSettings

COUNTED_STAGES = ("captured", "qualified", "disqualified", "accepted", "rejected")
"""Stages counted all time by source: a lead's and a handoff's source never change (a
deal's attribution may, so deals are counted by source per quarter only)."""


class _Snapshot(Collector):
    """Serves metric families computed before the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _counters(funnel: report.Funnel, settings: MetricsSettings) -> list[Metric]:
    """Everything so far, as counters: each only ever grows as events arrive."""
    total, sla = funnel.all_time.total, funnel.all_time.sla

    def counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation)
        family.add_metric([], value)
        return family

    stages = CounterMetricFamily(
        "funnel_stage_reached",
        "Leads and handoffs that reached a stage, by lead source (configured sources; "
        "the rest as other).",
        labels=["stage", "source"],
    )
    for source, counts in sorted(
        figures.bounded_sources(funnel.all_time.by_source, settings.sources).items()
    ):
        for stage in COUNTED_STAGES:
            stages.add_metric([stage, source], counts.count(stage))
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
    breaches = CounterMetricFamily(
        "funnel_handoff_sla_breaches",
        "Handoff SLA deadlines missed, by SLA policy.",
        labels=["policy"],
    )
    for policy, count in sla.breaches_by_policy.items():
        breaches.add_metric([policy], count)
    closings = CounterMetricFamily(
        "funnel_deals_closed",
        "Times deals became won or lost, by outcome; a reopened deal's close still "
        "happened (deals closed in a quarter as they stand now: funnel_deals_closed).",
        labels=["outcome"],
    )
    for outcome in ("won", "lost"):
        closings.add_metric([outcome], funnel.closings.get(outcome, 0))
    accept = HistogramMetricFamily(
        "funnel_handoff_accept_seconds",
        "Business seconds from handoff to acceptance.",
        buckets=[
            ("+Inf" if bound == figures.INF else repr(float(bound)), count)
            for bound, count in funnel.all_time.accept_seconds.buckets
        ],
        sum_value=funnel.all_time.accept_seconds.sum,
    )
    return [
        counter(
            "funnel_leads_captured",
            "Leads captured (new leads, not merged duplicates, not spam).",
            total.captured,
        ),
        counter("funnel_leads_spam", "Leads captured and flagged as spam.", total.spam),
        counter("funnel_leads_qualified", "Leads qualified (MQL).", total.qualified),
        stages,
        handoffs,
        rejections,
        counter(
            "funnel_handoff_sla_deadlines",
            "First response deadlines of handoffs that are past (met or missed).",
            sla.deadlines,
        ),
        counter(
            "funnel_handoff_sla_deadlines_met",
            "First response deadlines past, met: decided (accepted or rejected) by then.",
            sla.met,
        ),
        breaches,
        counter(
            "funnel_handoff_escalations",
            "Handoffs escalated to a manager after their SLA breaches.",
            sla.escalations,
        ),
        accept,
        counter(
            "funnel_deals_opened",
            "Deals opened (a deal exists from its first event).",
            total.opened,
        ),
        counter(
            "funnel_deals_reopened",
            "Times a closed deal was opened again (an opened after a won or lost).",
            funnel.reopens,
        ),
        closings,
    ]


def _per_period(periods: list[figures.PeriodFigures], settings: MetricsSettings) -> list[Metric]:
    """Each exported quarter's figures, as gauges: they go up and down as the truth of
    the quarter becomes known (a late close date, a reopen)."""

    def gauge(name: str, documentation: str, *extra: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=["period", *extra])

    families = {
        "period_end": gauge(
            "funnel_period_end_timestamp_seconds",
            "End of the period in the reporting time zone, Unix seconds.",
        ),
        "stages": gauge(
            "funnel_stage_reached_in_period",
            "Leads, handoffs and deals that reached a stage within the period (deals won "
            "and lost by close date), by lead source.",
            "stage",
            "source",
        ),
        "stage_values": gauge(
            "funnel_stage_value_in_period",
            "Value of the deals opened, won and lost within the period (won and lost by "
            "close date), by lead source, cents: the Campaigns panels' revenue by source.",
            "stage",
            "source",
        ),
        "cohort": gauge(
            "funnel_cohort_reached",
            "Of the leads captured in the period, how many have reached each stage "
            "(stage captured: the cohort itself), by lead source.",
            "stage",
            "source",
        ),
        "conversion": gauge(
            "funnel_cohort_conversion_ratio",
            "Of the leads captured in the period, the share that reached each stage.",
            "stage",
        ),
        "attainment": gauge(
            "funnel_handoff_sla_attainment_ratio",
            "Of the handoffs whose first response deadline fell in the period (up to now), "
            "the share decided by that deadline.",
        ),
        "source_attainment": gauge(
            "funnel_handoff_sla_attainment_by_source_ratio",
            "funnel_handoff_sla_attainment_ratio of the handoffs of one lead source.",
            "source",
        ),
        "closed": gauge(
            "funnel_deals_closed", "Deals closed in the period, by outcome.", "outcome"
        ),
        "open_value": gauge(
            "funnel_pipeline_open_value", "Open deals expected to close in the period, cents."
        ),
        "target": gauge("funnel_revenue_target", "Revenue target of the period, cents."),
        "won_value": gauge("funnel_won_value", "Value of deals won in the period, cents."),
        "coverage": gauge(
            "funnel_pipeline_coverage_ratio", "Open pipeline / (target - won); +Inf when met."
        ),
        "win_rate": gauge(
            "funnel_win_rate_ratio",
            "Won / (won + lost) among deals closed in the period.",
            "basis",
        ),
        "retention": gauge(
            "funnel_retention_ratio",
            "Retention of the period's starting cohort (no sample before the period starts).",
            "kind",
        ),
        "forecast": gauge(
            "funnel_forecast_weighted_value", "Open amount x stage probability, cents."
        ),
        "leads_needed": gauge(
            "funnel_plan_leads_needed", "Leads still needed to reach the remaining target."
        ),
        "still_needed": gauge(
            "funnel_plan_pipeline_still_needed_value",
            "Pipeline still needed beyond the open one to reach the remaining target, cents.",
        ),
    }
    for figure in periods:
        label = [figure.period]
        _, end = parse_period(figure.period).bounds(settings.common.reporting_timezone)
        families["period_end"].add_metric(label, end.timestamp())
        by_source = figures.bounded_sources(figure.window.by_source, settings.sources)
        for source, counts in sorted(by_source.items()):
            for stage in (*figures.STAGES, *figures.DEAL_OUTCOMES):
                families["stages"].add_metric([*label, stage, source], counts.count(stage))
            for stage in figures.DEAL_STAGES:
                families["stage_values"].add_metric(
                    [*label, stage, source], getattr(counts, f"{stage}_value_cents")
                )
            for stage in figures.COHORT_STAGES:
                families["cohort"].add_metric(
                    [*label, stage, source], getattr(counts.cohort, stage)
                )
        by_source_attainment = figures.bounded_attainment(
            figure.window.attainment_by_source, settings.sources
        )
        for source, slice_ in sorted(by_source_attainment.items()):
            if (ratio := slice_.ratio) is not None:
                families["source_attainment"].add_metric([*label, source], ratio)
        for name, value in figure.window.total.cohort.conversion().items():
            if value is not None:
                families["conversion"].add_metric(
                    [*label, name.removeprefix("captured_to_")], value
                )
        if (attainment := figure.window.sla.attainment) is not None:
            families["attainment"].add_metric(label, attainment)
        families["closed"].add_metric([*label, "won"], figure.closed.won)
        families["closed"].add_metric([*label, "lost"], figure.closed.lost)
        families["open_value"].add_metric(label, figure.open_pipeline_cents)
        families["won_value"].add_metric(label, figure.closed.won_value_cents)
        families["forecast"].add_metric(label, figure.weighted_forecast_cents)
        if figure.target_cents is not None:
            families["target"].add_metric(label, figure.target_cents)
        if figure.coverage_ratio is not None:
            families["coverage"].add_metric(label, figure.coverage_ratio)
        for basis, value in (
            ("count", figure.win_rate_by_count()),
            ("value", figure.win_rate_by_value()),
        ):
            if value is not None:
                families["win_rate"].add_metric([*label, basis], value)
        if figure.retention is not None:
            for kind, value in (
                ("gross", figure.retention.gross),
                ("net", figure.retention.net),
                ("logo", figure.retention.logo),
            ):
                if value is not None:
                    families["retention"].add_metric([*label, kind], value)
        if figure.plan.leads_needed is not None:
            families["leads_needed"].add_metric(label, figure.plan.leads_needed)
        if figure.plan.pipeline_still_needed_cents is not None:
            families["still_needed"].add_metric(label, figure.plan.pipeline_still_needed_cents)
    return list(families.values())


def funnel_families(
    funnel: report.Funnel, periods: list[figures.PeriodFigures], settings: MetricsSettings
) -> list[Metric]:
    """The Prometheus families of the funnel figures (pure: figures in, families out)."""
    healthy = GaugeMetricFamily(
        "funnel_pipeline_coverage_healthy_ratio",
        "Coverage at or above this is healthy (setting).",
    )
    healthy.add_metric([], settings.healthy_coverage_ratio)
    # Boards show money in this currency; a panel's unit cannot come from a variable.
    currency = GaugeMetricFamily(
        "funnel_reporting_currency_info",
        "The reporting currency every money series is in (cents of it), as a label.",
        labels=["currency"],
    )
    currency.add_metric([settings.common.reporting_currency], 1)
    return [*_counters(funnel, settings), healthy, currency, *_per_period(periods, settings)]


def renderer(settings: MetricsSettings) -> ExtraMetrics:
    async def render(runtime: Runtime) -> bytes:
        now = utc_now()
        periods = exported_periods(
            now,
            settings.common.reporting_timezone,
            before=settings.periods_before,
            after=settings.periods_after,
        )
        async with runtime.pool.acquire() as connection:
            funnel, period_figures = await report.read_figures(
                connection, periods, settings, now=now
            )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(funnel_families(funnel, period_figures, settings)))
        return generate_latest(registry)

    return render
