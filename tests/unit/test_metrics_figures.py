"""The metrics service's pure figures: periods, coverage, win rate, retention, plan."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel_common.periods import (
    PATTERN,
    BadPeriod,
    Period,
    exported_periods,
    parse_period,
    period_of_date,
)
from metrics import figures

cents = st.integers(min_value=0, max_value=10**12)


@pytest.mark.parametrize(
    "text",
    ["2026-Q0", "2026-Q5", "2026Q1", "26-Q1", "2026-q1", "", "0000-Q1", "0001-Q1",
     "1969-Q4", "9999-Q1", "9999-Q4", "2026-Q1\n", "\u0662\u0660\u0662\u0666-Q1"],
)  # fmt: skip
def test_a_period_that_is_not_a_supported_calendar_quarter_is_refused(text: str) -> None:
    with pytest.raises(BadPeriod):
        parse_period(text)


SUPPORTED_DAYS = st.dates(min_value=date(1970, 1, 1), max_value=date(9998, 12, 31))


@given(SUPPORTED_DAYS)
def test_every_date_falls_in_exactly_the_quarter_whose_bounds_hold_it(day: date) -> None:
    period = period_of_date(day)

    assert period.first_day() <= day < period.shifted(1).first_day()
    assert parse_period(str(period)) == period
    assert re.fullmatch(PATTERN, str(period))


@given(
    day=SUPPORTED_DAYS,
    timezone=st.sampled_from(["UTC", "Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT+12"]),
)
def test_every_supported_quarter_has_bounds_in_every_time_zone(day: date, timezone: str) -> None:
    start, end = period_of_date(day).bounds(timezone)

    assert start < end


def test_the_pattern_in_the_schema_is_the_supported_range() -> None:
    matched = {text: bool(re.fullmatch(PATTERN, text)) for text in ("1970-Q1", "9998-Q4",
               "1969-Q4", "9999-Q1")}  # fmt: skip

    assert matched == {"1970-Q1": True, "9998-Q4": True, "1969-Q4": False, "9999-Q1": False}


def test_quarter_bounds_are_midnights_in_the_reporting_time_zone() -> None:
    start, end = Period(2026, 1).bounds("America/New_York")

    assert start == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert end == datetime(2026, 4, 1, 4, tzinfo=UTC)  # daylight saving time by then


def test_the_exported_window_is_previous_current_and_next_quarter() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)

    window = exported_periods(now, "UTC", before=1, after=1)

    assert [str(p) for p in window] == ["2025-Q4", "2026-Q1", "2026-Q2"]


@given(open_value=cents, target=cents, won=cents)
def test_coverage_is_open_pipeline_over_the_remaining_target(
    open_value: int, target: int, won: int
) -> None:
    coverage = figures.coverage(open_value, target, won)

    if target - won <= 0:
        assert coverage == math.inf
    else:
        assert coverage == open_value / (target - won)


def test_there_is_no_coverage_without_a_target() -> None:
    assert figures.coverage(100, None, 0) is None


@given(st.lists(st.tuples(cents, st.booleans(), cents), max_size=20))
def test_retention_splits_every_cohort_customer_into_exactly_one_move(
    rows: list[tuple[int, bool, int]],
) -> None:
    cohort = [figures.AccountAcross(start, active, end) for start, active, end in rows]

    result = figures.retention(cohort)

    # Start + expansion - contraction - churn = end: every cent is accounted for once.
    assert (
        result.start_arr_cents
        + result.expansion_cents
        - result.contraction_cents
        - result.churned_arr_cents
        == result.end_arr_cents
    )
    if result.start_arr_cents:
        assert result.gross is not None
        assert result.gross <= 1
        assert result.net == result.end_arr_cents / result.start_arr_cents


def test_a_churned_customer_counts_its_whole_start_arr_as_churn() -> None:
    result = figures.retention(
        [figures.AccountAcross(100, False, 0), figures.AccountAcross(300, True, 200)]
    )

    assert (result.churned_arr_cents, result.contraction_cents) == (100, 100)
    assert result.gross == 200 / 400
    assert result.logo == 1 / 2


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), cents))
def test_the_weighted_forecast_rounds_once_down_to_a_cent(open_by_stage: dict[str, int]) -> None:
    probabilities = {"a": 10, "b": 33, "c": 100}

    forecast = figures.weighted_forecast(open_by_stage, probabilities, 7)

    exact = sum(
        Fraction(amount * probabilities.get(stage, 7), 100)
        for stage, amount in open_by_stage.items()
    )
    assert forecast == math.floor(exact)


@given(
    target=cents,
    won_in_period=cents,
    won=st.integers(1, 1000),
    won_value=st.integers(1, 10**10),
    lost_value=cents,
    captured=st.integers(0, 10**5),
)
def test_the_plan_asks_for_enough_leads_and_pipeline_and_no_more(
    target: int, won_in_period: int, won: int, won_value: int, lost_value: int, captured: int
) -> None:
    history = figures.StageCounts(
        captured=captured, won=won, won_value_cents=won_value, lost_value_cents=lost_value
    )

    plan = figures.plan(
        target_cents=target,
        won_in_period_cents=won_in_period,
        open_pipeline_cents=0,
        history=history,
    )

    assert plan.remaining_cents == target - won_in_period
    remaining = max(0, target - won_in_period)
    assert plan.deals_needed is not None
    assert plan.pipeline_needed_cents is not None
    # Enough deals of the average won size, and not one more than that.
    per_deal = Fraction(won_value, won)
    assert plan.deals_needed * per_deal >= remaining
    assert plan.deals_needed == 0 or (plan.deals_needed - 1) * per_deal < remaining
    if captured:
        per_lead = per_deal * Fraction(won, captured)
        assert plan.leads_needed is not None
        assert plan.leads_needed * per_lead >= remaining
        assert plan.leads_needed == 0 or (plan.leads_needed - 1) * per_lead < remaining
    else:
        assert plan.leads_needed is None


def test_the_plan_needs_nothing_once_the_target_is_met_and_says_by_how_much() -> None:
    history = figures.StageCounts(captured=10, won=2, won_value_cents=1000)

    plan = figures.plan(
        target_cents=500, won_in_period_cents=800, open_pipeline_cents=0, history=history
    )

    assert (plan.remaining_cents, plan.leads_needed, plan.pipeline_still_needed_cents) == (
        -300,
        0,
        0,
    )


def test_the_average_won_deal_is_rounded_up_to_a_cent() -> None:
    history = figures.StageCounts(captured=10, won=3, won_value_cents=1000)

    plan = figures.plan(
        target_cents=None, won_in_period_cents=0, open_pipeline_cents=0, history=history
    )

    assert plan.average_won_deal_cents == 334


def test_win_rate_and_sla_attainment_are_absent_when_there_is_nothing_to_divide_by() -> None:
    empty = figures.window_figures(
        stage_rows=[], cohort_rows=[], sla_rows=[], breaches_by_policy={}, escalations=0,
        accept_rows=[], accept_seconds_buckets=[60.0],
    )  # fmt: skip
    period = figures.period_figures(
        period="2026-Q1", window=empty, target_cents=None, open_by_stage={}, cohort=None,
        history=empty.total, probabilities={}, default_probability_percent=0,
        healthy_coverage_ratio=3.0,
    )  # fmt: skip

    assert (period.win_rate_by_count(), period.win_rate_by_value()) == (None, None)
    assert empty.sla.attainment is None
    assert period.retention is None


@given(st.lists(st.tuples(*(st.integers(0, 50) for _ in range(4))).map(sorted), max_size=5))
def test_cohort_conversion_never_exceeds_one(reached: list[list[int]]) -> None:
    cohort = figures.Cohort()
    for won, opened, accepted, qualified in reached:
        cohort.add(figures.Cohort(qualified + 1, qualified, accepted, opened, won))

    shares = cohort.conversion().values()

    assert all(share is None or 0 <= share <= 1 for share in shares)


def test_sla_attainment_counts_an_undecided_handoff_past_its_deadline_as_missed() -> None:
    sla = figures.Sla(
        deadlines=4, met=3, breaches_by_policy={"default": 2, "vip": 1}, escalations=1
    )

    assert (sla.attainment, sla.missed, sla.breaches) == (0.75, 1, 3)


def test_unlisted_sources_are_exported_as_other() -> None:
    counts = {
        ("web", ""): figures.StageCounts(captured=1),
        ("utm-typo-1", "x"): figures.StageCounts(captured=2),
        ("utm-typo-2", ""): figures.StageCounts(captured=3),
    }

    bounded = figures.bounded_sources(counts, ["web", "webinar"])

    assert {label: c.captured for label, c in bounded.items()} == {"web": 1, "other": 5}


def test_a_stage_probability_outside_0_to_100_percent_is_refused() -> None:
    from pydantic import ValidationError

    from metrics.settings import MetricsSettings

    with pytest.raises(ValidationError, match="proposal"):
        MetricsSettings(stage_probabilities={"proposal": 150, "discovery": 10})
