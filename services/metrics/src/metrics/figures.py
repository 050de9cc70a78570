"""The funnel figures, computed from facts (pure: no I/O, no clock).

Every formula of ARCHITECTURE.md "Funnel definitions" lives here, once; the HTTP API
and the Prometheus exposition both render what these functions return. Money stays in
integer cents throughout; only ratios are floats, each computed by one division of
two exact integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from funnel_common.events import REJECTION_REASONS

INF = math.inf

STAGES = ("captured", "spam", "qualified", "disqualified", "accepted", "rejected", "opened")
"""What happens to a lead, a handoff or a deal, and never un-happens."""
DEAL_OUTCOMES = ("won", "lost")
"""Deal closes: a reopened deal is no longer won or lost."""
DEAL_STAGES = ("opened", "won", "lost")
"""Stages with a value: Σ the last known amount of the deals in them."""
COHORT_STAGES = ("captured", "qualified", "accepted", "opened", "won")
"""The main path: of the leads captured in a period, how many reached each stage."""


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


# --- stages by source and campaign ------------------------------------------------------


@dataclass
class Cohort:
    """Of the leads captured in a window: how many have reached each stage since."""

    captured: int = 0
    qualified: int = 0
    accepted: int = 0
    opened: int = 0
    won: int = 0

    def add(self, other: Cohort) -> None:
        for name in COHORT_STAGES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def conversion(self) -> dict[str, float | None]:
        """Share of the cohort that reached each stage: never above 1."""
        return {
            f"captured_to_{stage}": ratio(getattr(self, stage), self.captured)
            for stage in COHORT_STAGES[1:]
        }


@dataclass
class StageCounts:
    """What happened within a window for one source/campaign, each counted when it
    happened (a deal's close by its close date), and the window's cohort."""

    captured: int = 0
    spam: int = 0
    qualified: int = 0
    disqualified: int = 0
    accepted: int = 0
    rejected: int = 0
    opened: int = 0
    won: int = 0
    lost: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    opened_value_cents: int = 0
    won_value_cents: int = 0
    lost_value_cents: int = 0
    cohort: Cohort = field(default_factory=Cohort)

    def add(self, other: StageCounts) -> None:
        for name in (*STAGES, *DEAL_OUTCOMES, *_VALUES):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.rejected_by_reason.items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + count
        self.cohort.add(other.cohort)

    def count(self, stage: str) -> int:
        count: int = getattr(self, stage)
        return count

    @property
    def decided(self) -> int:
        return self.accepted + self.rejected

    def as_json(self) -> dict[str, Any]:
        return {
            **{stage: self.count(stage) for stage in (*STAGES, *DEAL_OUTCOMES)},
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            **{name: getattr(self, name) for name in _VALUES},
            "cohort": {stage: getattr(self.cohort, stage) for stage in COHORT_STAGES},
            "conversion": self.cohort.conversion(),
        }


_VALUES = ("opened_value_cents", "won_value_cents", "lost_value_cents")

SourceKey = tuple[str, str]
"""(source, campaign); campaign is "" when the lead had none."""


def stage_counts(
    stage_rows: Iterable[Mapping[str, Any]], cohort_rows: Iterable[Mapping[str, Any]]
) -> dict[SourceKey, StageCounts]:
    """Stage counts per (source, campaign) from the store's grouped rows."""
    counts: dict[SourceKey, StageCounts] = {}

    def of(row: Mapping[str, Any]) -> StageCounts:
        return counts.setdefault((row["source"], row["campaign"]), StageCounts())

    for row in stage_rows:
        entry, stage = of(row), row["stage"]
        setattr(entry, stage, entry.count(stage) + row["count"])
        if stage in ("opened", "won", "lost"):
            name = f"{stage}_value_cents"
            setattr(entry, name, getattr(entry, name) + row["value_cents"])
        if stage == "rejected":
            reasons = entry.rejected_by_reason
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["count"]
    for row in cohort_rows:
        entry = of(row)
        entry.cohort.add(Cohort(*(row[stage] for stage in COHORT_STAGES)))
    return counts


def total(counts: Mapping[SourceKey, StageCounts]) -> StageCounts:
    result = StageCounts(rejected_by_reason=dict.fromkeys(REJECTION_REASONS, 0))
    for entry in counts.values():
        result.add(entry)
    return result


def bounded_sources(
    counts: Mapping[SourceKey, StageCounts], allowed: Iterable[str]
) -> dict[str, StageCounts]:
    """Counts by source label for Prometheus: allowed sources as is, the rest as "other".

    Campaigns are never a label (too many); they are in the JSON API.
    """
    allowed_set = set(allowed)
    result: dict[str, StageCounts] = {}
    for (source, _campaign), entry in counts.items():
        label = source if source in allowed_set else "other"
        result.setdefault(label, StageCounts()).add(entry)
    return result


# --- handoffs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sla:
    """SLA attainment (ARCHITECTURE.md): of the handoffs whose first response deadline
    fell in the window (and is past), the share decided by that deadline; one still
    undecided is a miss. Breaches and escalations are beside it, not folded into it."""

    deadlines: int
    met: int
    breaches_by_policy: dict[str, int]
    escalations: int

    @property
    def missed(self) -> int:
        return self.deadlines - self.met

    @property
    def attainment(self) -> float | None:
        return ratio(self.met, self.deadlines)

    @property
    def breaches(self) -> int:
        return sum(self.breaches_by_policy.values())


@dataclass(frozen=True)
class Attainment:
    """The SLA attainment of one slice (a source and campaign): deadlines past, met."""

    deadlines: int = 0
    met: int = 0

    def plus(self, other: Attainment) -> Attainment:
        return Attainment(self.deadlines + other.deadlines, self.met + other.met)

    @property
    def ratio(self) -> float | None:
        return ratio(self.met, self.deadlines)


def attainment_by_source(rows: Iterable[Mapping[str, Any]]) -> dict[SourceKey, Attainment]:
    """SLA attainment per (source, campaign) from the store's (deadlines, met) rows."""
    found: dict[SourceKey, Attainment] = {}
    for row in rows:
        key = (row["source"], row["campaign"])
        found[key] = found.get(key, Attainment()).plus(Attainment(row["deadlines"], row["met"]))
    return found


def bounded_attainment(
    by_source: Mapping[SourceKey, Attainment], allowed: Iterable[str]
) -> dict[str, Attainment]:
    """Attainment by source label for Prometheus, as :func:`bounded_sources` folds counts."""
    allowed_set = set(allowed)
    result: dict[str, Attainment] = {}
    for (source, _campaign), attainment in by_source.items():
        label = source if source in allowed_set else "other"
        result[label] = result.get(label, Attainment()).plus(attainment)
    return result


def median(counts: Iterable[tuple[int, int]]) -> float | None:
    """The median of values given as (value, how many times); the mean of the two middle
    values when there is an even number of them; None for none."""
    ordered = sorted(counts)
    total = sum(times for _, times in ordered)
    if total == 0:
        return None
    low, high = (total - 1) // 2, total // 2  # the middle positions, counting from 0
    found: list[int] = []
    seen = 0
    for value, times in ordered:
        for position in (low, high):
            if seen <= position < seen + times:
                found.append(value)
        seen += times
    return (found[0] + found[1]) / 2


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]
    """(upper bound, cumulative count), ending with +Inf."""
    count: int
    sum: int


def histogram(rows: Iterable[Mapping[str, Any]], bounds: Iterable[float]) -> Histogram:
    """A cumulative histogram from (bucket, handoffs, seconds) rows, where bucket k
    counts the values above exactly k of the sorted ``bounds``."""
    ordered = sorted(bounds)
    by_bucket: dict[int, int] = {}
    for row in rows:
        by_bucket[row["bucket"]] = by_bucket.get(row["bucket"], 0) + row["handoffs"]
    count = sum(by_bucket.values())
    # value <= bounds[i] exactly when fewer than i + 1 bounds lie below it.
    buckets = [
        (bound, sum(n for bucket, n in by_bucket.items() if bucket <= index))
        for index, bound in enumerate(ordered)
    ]
    buckets.append((INF, count))
    return Histogram(buckets=buckets, count=count, sum=sum(row["seconds"] for row in rows))


# --- one period -----------------------------------------------------------------------


def coverage(
    open_pipeline_cents: int, target_cents: int | None, won_value_cents: int
) -> float | None:
    """Open pipeline / remaining target; +Inf once the target is met; None without one."""
    if target_cents is None:
        return None
    remaining = target_cents - won_value_cents
    if remaining <= 0:
        return INF
    return open_pipeline_cents / remaining


def weighted_forecast(
    open_by_stage: Mapping[str, int], probabilities: Mapping[str, int], default_percent: int
) -> int:
    """sum of open amount x stage probability (whole percents), rounded down to a cent.

    Summed before dividing, so rounding happens once, not per deal.
    """
    weighted = sum(
        amount * probabilities.get(stage, default_percent)
        for stage, amount in open_by_stage.items()
    )
    return weighted // 100


@dataclass(frozen=True)
class AccountAcross:
    """A cohort customer: its ARR at the period's start and its state at the end."""

    start_arr_cents: int
    end_active: bool
    end_arr_cents: int

    @property
    def end_value(self) -> int:
        return self.end_arr_cents if self.end_active else 0


@dataclass(frozen=True)
class Retention:
    cohort_size: int
    active_at_end: int
    start_arr_cents: int
    end_arr_cents: int
    expansion_cents: int
    contraction_cents: int
    churned_arr_cents: int

    @property
    def gross(self) -> float | None:
        return ratio(
            self.start_arr_cents - self.contraction_cents - self.churned_arr_cents,
            self.start_arr_cents,
        )

    @property
    def net(self) -> float | None:
        return ratio(self.end_arr_cents, self.start_arr_cents)

    @property
    def logo(self) -> float | None:
        return ratio(self.active_at_end, self.cohort_size)

    def as_json(self) -> dict[str, Any]:
        return {
            "cohort_size": self.cohort_size,
            "active_at_end": self.active_at_end,
            "start_arr_cents": self.start_arr_cents,
            "end_arr_cents": self.end_arr_cents,
            "expansion_cents": self.expansion_cents,
            "contraction_cents": self.contraction_cents,
            "churned_arr_cents": self.churned_arr_cents,
            "gross": self.gross,
            "net": self.net,
            "logo": self.logo,
        }


def retention(cohort: Iterable[AccountAcross]) -> Retention:
    """Start vs end per customer: moves inside the period net out; end ARR 0 is churn."""
    size = active = start = end = expansion = contraction = churned = 0
    for account in cohort:
        size += 1
        active += account.end_active
        start += account.start_arr_cents
        end += account.end_value
        if account.end_value == 0:
            churned += account.start_arr_cents
        elif account.end_value < account.start_arr_cents:
            contraction += account.start_arr_cents - account.end_value
        else:
            expansion += account.end_value - account.start_arr_cents
    return Retention(size, active, start, end, expansion, contraction, churned)


# --- reverse funnel -------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What it takes to close the rest of a period's target, from the funnel's history."""

    target_cents: int | None
    won_value_cents: int
    remaining_cents: int | None
    open_pipeline_cents: int
    average_won_deal_cents: int | None
    lead_to_won_rate: float | None
    win_rate_by_value: float | None
    deals_needed: int | None
    leads_needed: int | None
    pipeline_needed_cents: int | None
    pipeline_still_needed_cents: int | None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan(
    *,
    target_cents: int | None,
    won_in_period_cents: int,
    open_pipeline_cents: int,
    history: StageCounts,
) -> Plan:
    """The reverse funnel: remaining target back to deals, leads and pipeline.

    History is every lead and deal known so far. The remaining target r = target - won
    in the period (negative once the target is beaten); with r' = max(r, 0):
    deals = r' / average won deal; leads = r' / (average won deal x lead-to-won rate)
    = r' x captured / won value; pipeline = r' / win rate by value. Each is rounded up
    (half a lead is a lead) with integer arithmetic from the exact average, so it is
    exact; the average itself is shown rounded up to a cent.
    """
    remaining = None if target_cents is None else target_cents - won_in_period_cents
    won_value = history.won_value_cents
    average = _ceil_div(won_value, history.won) if history.won else None
    deals = leads = pipeline = still = None
    if remaining is not None and won_value > 0:
        left = max(0, remaining)
        deals = _ceil_div(left * history.won, won_value)
        pipeline = _ceil_div(left * (won_value + history.lost_value_cents), won_value)
        still = max(0, pipeline - open_pipeline_cents)
        if history.captured:
            leads = _ceil_div(left * history.captured, won_value)
    return Plan(
        target_cents=target_cents,
        won_value_cents=won_in_period_cents,
        remaining_cents=remaining,
        open_pipeline_cents=open_pipeline_cents,
        average_won_deal_cents=average,
        lead_to_won_rate=ratio(history.won, history.captured),
        win_rate_by_value=ratio(won_value, won_value + history.lost_value_cents),
        deals_needed=deals,
        leads_needed=leads,
        pipeline_needed_cents=pipeline,
        pipeline_still_needed_cents=still,
    )


# --- everything about one window ---------------------------------------------------------


@dataclass(frozen=True)
class WindowFigures:
    """Stages, handoffs and SLA within a window (a quarter, or all time)."""

    by_source: dict[SourceKey, StageCounts]
    total: StageCounts
    sla: Sla
    accept_seconds: Histogram
    attainment_by_source: dict[SourceKey, Attainment]
    """The SLA attainment of each source and campaign; they add up to ``sla``'s."""


def window_figures(
    *,
    stage_rows: Iterable[Mapping[str, Any]],
    cohort_rows: Iterable[Mapping[str, Any]],
    sla_rows: Iterable[Mapping[str, Any]],
    breaches_by_policy: dict[str, int],
    escalations: int,
    accept_rows: Iterable[Mapping[str, Any]],
    accept_seconds_buckets: Iterable[float],
) -> WindowFigures:
    by_source = stage_counts(stage_rows, cohort_rows)
    attainment = attainment_by_source(sla_rows)
    overall = Attainment()
    for slice_ in attainment.values():
        overall = overall.plus(slice_)
    return WindowFigures(
        by_source=by_source,
        total=total(by_source),
        sla=Sla(
            deadlines=overall.deadlines,
            met=overall.met,
            breaches_by_policy=breaches_by_policy,
            escalations=escalations,
        ),
        accept_seconds=histogram(accept_rows, accept_seconds_buckets),
        attainment_by_source=attainment,
    )


@dataclass(frozen=True)
class PeriodFigures:
    period: str
    window: WindowFigures
    target_cents: int | None
    open_pipeline_cents: int
    weighted_forecast_cents: int
    coverage_ratio: float | None
    healthy_coverage_ratio: float
    retention: Retention | None
    """None for a quarter that has not started: it has no cohort yet."""
    plan: Plan

    @property
    def closed(self) -> StageCounts:
        """Deals won and lost with a close date in the period (by their last amount)."""
        return self.window.total

    def win_rate_by_count(self) -> float | None:
        return ratio(self.closed.won, self.closed.won + self.closed.lost)

    def win_rate_by_value(self) -> float | None:
        return ratio(
            self.closed.won_value_cents,
            self.closed.won_value_cents + self.closed.lost_value_cents,
        )


def period_figures(
    *,
    period: str,
    window: WindowFigures,
    target_cents: int | None,
    open_by_stage: Mapping[str, int],
    cohort: Iterable[AccountAcross] | None,
    history: StageCounts,
    probabilities: Mapping[str, int],
    default_probability_percent: int,
    healthy_coverage_ratio: float,
) -> PeriodFigures:
    open_pipeline = sum(open_by_stage.values())
    won = window.total.won_value_cents
    return PeriodFigures(
        period=period,
        window=window,
        target_cents=target_cents,
        open_pipeline_cents=open_pipeline,
        weighted_forecast_cents=weighted_forecast(
            open_by_stage, probabilities, default_probability_percent
        ),
        coverage_ratio=coverage(open_pipeline, target_cents, won),
        healthy_coverage_ratio=healthy_coverage_ratio,
        retention=None if cohort is None else retention(cohort),
        plan=plan(
            target_cents=target_cents,
            won_in_period_cents=won,
            open_pipeline_cents=open_pipeline,
            history=history,
        ),
    )
