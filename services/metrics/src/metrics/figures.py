"""The funnel figures, computed from facts (pure: no I/O, no clock).

Every formula of ARCHITECTURE.md "Funnel definitions" lives here, once; the HTTP API
and the Prometheus exposition both render what these functions return. Money stays in
integer cents throughout; only ratios are floats, each computed by one division of
two exact integers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from funnel_common.events import REJECTION_REASONS

INF = math.inf

STAGES = ("captured", "qualified", "disqualified", "accepted", "rejected", "opened", "won", "lost")
# The main path through the funnel; conversion and drop-off are between neighbours.
PATH = ("captured", "qualified", "accepted", "opened", "won")


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


# --- stages by source and campaign ------------------------------------------------------


@dataclass
class StageCounts:
    """How many leads, handoffs and deals of one source/campaign reached each stage."""

    captured: int = 0
    qualified: int = 0
    disqualified: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    within_sla: int = 0
    opened: int = 0
    won: int = 0
    lost: int = 0
    opened_value_cents: int = 0
    open_value_cents: int = 0
    won_value_cents: int = 0
    lost_value_cents: int = 0

    def add(self, other: StageCounts) -> None:
        for name in (
            *STAGES,
            "within_sla",
            "opened_value_cents",
            "open_value_cents",
            "won_value_cents",
            "lost_value_cents",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.rejected_by_reason.items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + count

    @property
    def decided(self) -> int:
        return self.accepted + self.rejected

    def sla_attainment(self) -> float | None:
        """Handoffs decided within their SLA / handoffs decided."""
        return ratio(self.within_sla, self.decided)

    def conversions(self) -> dict[str, float | None]:
        """Share of each stage that reached the next one (e.g. ``qualified_to_accepted``)."""
        return {
            f"{before}_to_{after}": ratio(getattr(self, after), getattr(self, before))
            for before, after in itertools.pairwise(PATH)
        }

    def drop_off(self) -> dict[str, int]:
        """How many did not make it from one stage to the next (by count)."""
        return {
            f"{before}_to_{after}": getattr(self, before) - getattr(self, after)
            for before, after in itertools.pairwise(PATH)
        }

    def drop_off_value_cents(self) -> int:
        """Value of opened deals that were not won (lost, or still open)."""
        return self.opened_value_cents - self.won_value_cents

    def as_json(self) -> dict[str, Any]:
        return {
            **{stage: getattr(self, stage) for stage in STAGES},
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "decided": self.decided,
            "within_sla": self.within_sla,
            "sla_attainment_ratio": self.sla_attainment(),
            "opened_value_cents": self.opened_value_cents,
            "open_value_cents": self.open_value_cents,
            "won_value_cents": self.won_value_cents,
            "lost_value_cents": self.lost_value_cents,
            "conversion": self.conversions(),
            "drop_off": self.drop_off(),
            "drop_off_value_cents": {"opened_to_won": self.drop_off_value_cents()},
        }


SourceKey = tuple[str, str]
"""(source, campaign); campaign is "" when the lead had none."""


def stage_counts(
    lead_rows: Iterable[Mapping[str, Any]],
    decision_rows: Iterable[Mapping[str, Any]],
    deal_rows: Iterable[Mapping[str, Any]],
) -> dict[SourceKey, StageCounts]:
    """Stage counts per (source, campaign) from the store's grouped rows."""
    counts: dict[SourceKey, StageCounts] = {}

    def of(row: Mapping[str, Any]) -> StageCounts:
        return counts.setdefault((row["source"], row["campaign"]), StageCounts())

    for row in lead_rows:
        entry = of(row)
        setattr(entry, row["stage"], getattr(entry, row["stage"]) + row["leads"])
    for row in decision_rows:
        entry = of(row)
        entry.within_sla += row["within_sla"]
        if row["outcome"] == "accepted":
            entry.accepted += row["decisions"]
        else:
            entry.rejected += row["decisions"]
            reason = row["reason"]
            entry.rejected_by_reason[reason] = (
                entry.rejected_by_reason.get(reason, 0) + row["decisions"]
            )
    for row in deal_rows:
        entry = of(row)
        # Any deal event means the opportunity existed, even if "opened" never arrived.
        entry.opened += row["deals"]
        entry.opened_value_cents += row["value_cents"]
        if row["status"] == "won":
            entry.won += row["deals"]
            entry.won_value_cents += row["value_cents"]
        elif row["status"] == "lost":
            entry.lost += row["deals"]
            entry.lost_value_cents += row["value_cents"]
        else:
            entry.open_value_cents += row["value_cents"]
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


# --- handoff timing -------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]
    """(upper bound, cumulative count), ending with +Inf."""
    count: int
    sum: int


def histogram(rows: Iterable[Mapping[str, Any]], bounds: Iterable[float]) -> Histogram:
    """A cumulative histogram of (seconds, handoffs) rows."""
    values = [(row["seconds"], row["handoffs"]) for row in rows]
    buckets = [
        (bound, sum(n for seconds, n in values if seconds <= bound)) for bound in sorted(bounds)
    ]
    count = sum(n for _, n in values)
    buckets.append((INF, count))
    return Histogram(buckets=buckets, count=count, sum=sum(s * n for s, n in values))


# --- one period -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedDeals:
    """Deals won and lost with a close date in the period (value = last known amount)."""

    won: int = 0
    won_value_cents: int = 0
    lost: int = 0
    lost_value_cents: int = 0

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]]) -> ClosedDeals:
        by_status = {row["status"]: (row["deals"], row["value_cents"]) for row in rows}
        won, won_value = by_status.get("won", (0, 0))
        lost, lost_value = by_status.get("lost", (0, 0))
        return cls(won, won_value, lost, lost_value)

    def win_rate_by_count(self) -> float | None:
        return ratio(self.won, self.won + self.lost)

    def win_rate_by_value(self) -> float | None:
        return ratio(self.won_value_cents, self.won_value_cents + self.lost_value_cents)


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


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


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

    History is every lead and deal known so far. With r = remaining target:
    deals = r / average won deal; leads = r / (average won deal x lead-to-won rate)
    = r x captured / won value; pipeline = r / win rate by value. Each is rounded up
    (half a lead is a lead) with integer arithmetic, so it is exact.
    """
    remaining = None if target_cents is None else max(0, target_cents - won_in_period_cents)
    won_value = history.won_value_cents
    average = won_value // history.won if history.won else None
    deals = leads = pipeline = still = None
    if remaining is not None and won_value > 0:
        deals = _ceil_div(remaining * history.won, won_value)
        pipeline = _ceil_div(remaining * (won_value + history.lost_value_cents), won_value)
        still = max(0, pipeline - open_pipeline_cents)
        if history.captured:
            leads = _ceil_div(remaining * history.captured, won_value)
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


# --- everything about one period --------------------------------------------------------


@dataclass(frozen=True)
class PeriodFigures:
    period: str
    target_cents: int | None
    closed: ClosedDeals
    open_pipeline_cents: int
    weighted_forecast_cents: int
    coverage_ratio: float | None
    healthy_coverage_ratio: float
    retention: Retention
    plan: Plan

    def as_json(self) -> dict[str, Any]:
        coverage_value: float | str | None = self.coverage_ratio
        if coverage_value == INF:
            coverage_value = "+Inf"  # JSON has no infinity; the Prometheus spelling
        return {
            "target_cents": self.target_cents,
            "won_value_cents": self.closed.won_value_cents,
            "won": self.closed.won,
            "lost": self.closed.lost,
            "lost_value_cents": self.closed.lost_value_cents,
            "open_pipeline_cents": self.open_pipeline_cents,
            "remaining_target_cents": self.plan.remaining_cents,
            "coverage_ratio": coverage_value,
            "healthy_coverage_ratio": self.healthy_coverage_ratio,
            "coverage_healthy": None
            if self.coverage_ratio is None
            else self.coverage_ratio >= self.healthy_coverage_ratio,
            "win_rate": {
                "count": self.closed.win_rate_by_count(),
                "value": self.closed.win_rate_by_value(),
            },
            "weighted_forecast_cents": self.weighted_forecast_cents,
        }


def period_figures(
    *,
    period: str,
    target_cents: int | None,
    closed: ClosedDeals,
    open_by_stage: Mapping[str, int],
    cohort: Iterable[AccountAcross],
    history: StageCounts,
    probabilities: Mapping[str, int],
    default_probability_percent: int,
    healthy_coverage_ratio: float,
) -> PeriodFigures:
    open_pipeline = sum(open_by_stage.values())
    return PeriodFigures(
        period=period,
        target_cents=target_cents,
        closed=closed,
        open_pipeline_cents=open_pipeline,
        weighted_forecast_cents=weighted_forecast(
            open_by_stage, probabilities, default_probability_percent
        ),
        coverage_ratio=coverage(open_pipeline, target_cents, closed.won_value_cents),
        healthy_coverage_ratio=healthy_coverage_ratio,
        retention=retention(cohort),
        plan=plan(
            target_cents=target_cents,
            won_in_period_cents=closed.won_value_cents,
            open_pipeline_cents=open_pipeline,
            history=history,
        ),
    )
