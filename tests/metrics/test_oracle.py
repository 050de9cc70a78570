"""The oracle test: random funnel histories through the real broker, checked against a
plain recomputation from the event list (tests/metrics/oracle.py), in the JSON API and
in /metrics. One service and one set of topics serve every example; each history has
fresh ids and the oracle recomputes over everything sent so far."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from funnel_common.events import Envelope
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.metrics.histories import histories
from tests.metrics.oracle import BUCKETS, Oracle, differences
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    SOURCES,
    metrics_settings,
    parse_samples,
    produce,
    running_metrics,
    series,
)

NOW = utc_now()


def quarter(offset: int) -> str:
    index = NOW.year * 4 + (NOW.month - 1) // 3 + offset
    return f"{index // 4}-Q{index % 4 + 1}"


def quarter_end(period: str) -> float:
    """Midnight UTC (the default reporting zone) starting the next quarter, Unix seconds."""
    year, number = int(period[:4]), int(period[-1])
    next_year, next_month = (year + 1, 1) if number == 4 else (year, 3 * number + 1)
    return datetime(next_year, next_month, 1, tzinfo=UTC).timestamp()


# The exported window (previous, current, next) and one quarter before it (JSON only).
EXPORTED = [quarter(-1), quarter(0), quarter(1)]
CHECKED = [quarter(-2), *EXPORTED]


@pytest.fixture
async def metrics(database_url: str, topics: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_metrics(metrics_settings(database_url, topics)) as client:
        yield client


async def json_differences(client: httpx.AsyncClient, oracle: Oracle) -> list[str]:
    found = []
    for period in CHECKED:
        answer = await client.get("/v1/funnel", params={"period": period})
        assert answer.status_code == 200, answer.text
        found += differences(oracle.funnel(period), answer.json(), period)
    return found


def expected_samples(oracle: Oracle) -> dict[Any, float | None]:
    """Every contract series and the value the oracle says it must have (None: absent)."""
    total = oracle.total()
    expected: dict[Any, float | None] = {
        series("funnel_leads_captured_total"): total["captured"],
        series("funnel_leads_qualified_total"): total["qualified"],
        series("funnel_handoffs_total", outcome="accepted"): total["accepted"],
        series("funnel_handoffs_total", outcome="rejected"): total["rejected"],
        series("funnel_handoff_sla_breaches_total"): oracle.breaches(),
        series("funnel_deals_closed_total", outcome="won"): total["won"],
        series("funnel_deals_closed_total", outcome="lost"): total["lost"],
        series("funnel_pipeline_coverage_healthy_ratio"): 3.0,
    }
    for reason, count in total["rejected_by_reason"].items():
        expected[series("funnel_handoff_rejections_total", reason=reason)] = count
    seconds = oracle.accept_seconds()
    for bound in BUCKETS:
        expected[series("funnel_handoff_accept_seconds_bucket", le=repr(float(bound)))] = len(
            [s for s in seconds if s <= bound]
        )
    expected[series("funnel_handoff_accept_seconds_bucket", le="+Inf")] = len(seconds)
    expected[series("funnel_handoff_accept_seconds_count")] = len(seconds)
    expected[series("funnel_handoff_accept_seconds_sum")] = sum(seconds)
    by_label: dict[str, dict[str, int]] = {}
    for (source, _campaign), entry in oracle.stages().items():
        label = source if source in SOURCES else "other"
        counts = by_label.setdefault(label, {})
        for stage in ("captured", "qualified", "accepted", "rejected", "opened", "won", "lost"):
            counts[stage] = counts.get(stage, 0) + entry[stage]
    for label, counts in by_label.items():
        for stage, count in counts.items():
            expected[series("funnel_stage_reached_total", stage=stage, source=label)] = count
    for period in EXPORTED:
        figures = oracle.period(period)
        revenue, retention, plan = figures["revenue"], figures["retention"], figures["plan"]
        coverage = revenue["coverage_ratio"]
        expected |= {
            series("funnel_pipeline_open_value", period=period): revenue["open_pipeline_cents"],
            series("funnel_won_value", period=period): revenue["won_value_cents"],
            series("funnel_revenue_target", period=period): revenue["target_cents"],
            series("funnel_pipeline_coverage_ratio", period=period): math.inf
            if coverage == "+Inf"
            else coverage,
            series("funnel_forecast_weighted_value", period=period): revenue[
                "weighted_forecast_cents"
            ],
            series("funnel_win_rate_ratio", period=period, basis="count"): revenue["win_rate"][
                "count"
            ],
            series("funnel_win_rate_ratio", period=period, basis="value"): revenue["win_rate"][
                "value"
            ],
            series("funnel_plan_leads_needed", period=period): plan["leads_needed"],
            series("funnel_plan_pipeline_needed_value", period=period): plan[
                "pipeline_still_needed_cents"
            ],
            series("funnel_period_end_timestamp_seconds", period=period): quarter_end(period),
        }
        for kind in ("gross", "net", "logo"):
            expected[series("funnel_retention_ratio", period=period, kind=kind)] = retention[kind]
    return expected


async def metric_differences(client: httpx.AsyncClient, oracle: Oracle) -> list[str]:
    samples = parse_samples((await client.get("/metrics")).text)
    found = []
    for key, value in expected_samples(oracle).items():
        seen = samples.get(key)
        if value is None or seen is None:
            if value != seen:
                found.append(f"{key}: expected {value!r}, got {seen!r}")
        elif not (seen == value or abs(seen - value) <= 1e-9):
            found.append(f"{key}: expected {value!r}, got {seen!r}")
    return found


@pytest.mark.timeout(170)
@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each run costs broker time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(NOW), duplicates=st.integers(0, 5))
async def test_every_figure_matches_a_plain_recomputation_from_the_events(
    metrics: httpx.AsyncClient, topics: CommonSettings, history: list[Envelope], duplicates: int
) -> None:
    sent: list[Envelope] = _sent_so_far(topics)
    # Duplicate delivery: some events go out twice, with the same ids.
    await produce(topics, [*history, *history[:duplicates]])
    sent.extend(history)
    oracle = Oracle(sent, PROBABILITIES, DEFAULT_PROBABILITY)

    async def mismatches() -> list[str]:
        return await json_differences(metrics, oracle) + await metric_differences(metrics, oracle)

    found = await eventually(mismatches, until=lambda found: not found, timeout=30)

    assert found == []


_SENT: dict[str, list[Envelope]] = {}


def _sent_so_far(topics: CommonSettings) -> list[Envelope]:
    """Every event sent to this test's topics by earlier examples."""
    return _SENT.setdefault(topics.kafka_topic_prefix, [])
