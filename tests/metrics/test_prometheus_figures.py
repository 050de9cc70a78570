"""What Prometheus makes of metrics' figures: the shipped recording rules and the revenue
board's own queries evaluated by promtool over what /metrics really exported.

- SLA attainment is one figure: computed from the events by the oracle, it is what
  /v1/funnel says, what the gauge says, what the recording rule records and what the
  board's panel shows.
- A deal won, reopened and lost: no funnel_* counter ever goes down, so no Prometheus
  query sees a reset, and the deals closed in the quarter (a gauge) follow the reopen.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml

from funnel_common.events import (
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffAssigned,
    HandoffReassigned,
    HandoffRejected,
    HandoffSlaBreached,
)
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.dashboards import (
    DASHBOARD_FILES,
    PROMETHEUS_DIR,
    load_dashboard,
    panels,
    substitute,
)
from tests.conftest import require_system_tool
from tests.helpers import eventually
from tests.metrics.oracle import Oracle, quarter_bounds
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    SOURCES,
    Series,
    metrics_settings,
    parse_samples,
    produce,
    running_metrics,
    series,
)

NOW = utc_now()
CURRENT = f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"
START, END = quarter_bounds(CURRENT)


@pytest.fixture
async def metrics(database_url: str, topics: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_metrics(metrics_settings(database_url, topics)) as client:
        yield client


# Up to four days of this quarter's past, however young the quarter is.
SPAN = min(timedelta(days=4), NOW - START)


def _in_quarter(share: float) -> datetime:
    """A past instant of the current quarter: ``share`` of SPAN before now."""
    return NOW - SPAN * share


def handoff(
    *, due: datetime, decided: datetime | None, rejected: bool = False, escalated: bool = False
) -> list[Envelope]:
    handoff_id, lead_id = uuid4(), uuid4()
    assigned = due - timedelta(hours=4)
    common = {"handoff_id": handoff_id, "lead_id": lead_id, "team": "emea"}
    attribution = {"source": "web"}
    events: list[Envelope] = [
        HandoffAssigned.new(
            source="test", subject=handoff_id, time=assigned,
            data={**common, "assignee_rep_id": "rep-1", "assigned_at": assigned,
                  "due_at": due, "policy": "enterprise", "attribution": attribution},
        )
    ]  # fmt: skip
    if escalated:
        events += [
            HandoffSlaBreached.new(
                source="test", subject=handoff_id, time=due,
                data={**common, "rep_id": "rep-1", "due_at": due, "policy": "enterprise"},
            ),
            HandoffReassigned.new(
                source="test", subject=handoff_id, time=due,
                data={**common, "from_rep_id": "rep-1", "to_rep_id": "mgr-1",
                      "reason": "escalation", "due_at": None},
            ),
        ]  # fmt: skip
    if decided is not None:
        decision = {**common, "rep_id": "rep-1", "business_seconds_to_decision": 60,
                    "within_sla": decided <= due, "attribution": attribution}  # fmt: skip
        kind: type[Envelope] = HandoffRejected if rejected else HandoffAccepted
        if rejected:
            decision["reason"] = "no_budget"
        events.append(kind.new(source="test", subject=handoff_id, time=decided, data=decision))
    return events


def sla_history() -> list[Envelope]:
    """Deadlines in this quarter: met (accepted, rejected), decided late, undecided and
    escalated; one still to come (not yet in the figure) and one last quarter."""
    due, step = _in_quarter(0.5), SPAN / 8
    return [
        *handoff(due=due, decided=due - step),
        *handoff(due=due, decided=due - step / 10, rejected=True),
        *handoff(due=due, decided=due),  # decided exactly at the deadline: in time
        *handoff(due=due - step, decided=due + step),
        *handoff(due=due - step * 2, decided=None, escalated=True),
        *handoff(due=NOW + timedelta(days=3), decided=None),
        *handoff(due=START - timedelta(days=3), decided=None),
    ]


def promtool_test(
    tmp_path: Path, samples: list[dict[Series, float]], checks: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """Run the shipped rules over ``samples`` (one scrape a minute, exported by two
    replicas, as Prometheus would store them) and the given promql_expr_test checks."""
    promtool = require_system_tool("promtool", "evaluates the shipped rules and boards")
    names = sorted(set().union(*samples))
    input_series = []
    for instance in ("a", "b"):
        for name, labels in names:
            if not name.startswith("funnel_"):
                continue
            rendered = ",".join(
                f'{key}="{value}"'
                for key, value in sorted({**dict(labels), "job": "metrics",
                                          "component": "web", "instance": instance}.items())
            )  # fmt: skip
            values = " ".join(
                "_" if (name, labels) not in scrape else _number(scrape[(name, labels)])
                for scrape in samples
            )
            input_series.append({"series": f"{name}{{{rendered}}}", "values": values})
    test_file = tmp_path / "figures_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [
                    str(path) for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
                ],
                "evaluation_interval": "1m",
                "tests": [
                    {"interval": "1m", "input_series": input_series, "promql_expr_test": checks}
                ],
            },
            width=10_000,
        )
    )
    return subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _number(value: float) -> str:
    return "Inf" if value == float("inf") else repr(value)


def board_query(title: str) -> str:
    (board,) = [load_dashboard(path) for path in DASHBOARD_FILES if path.stem == "revenue-funnel"]
    (panel,) = [panel for panel in panels(board) if panel["title"] == title]
    (target,) = panel["targets"]
    return substitute(target["expr"], {"$period": CURRENT})


async def test_sla_attainment_is_one_figure_in_json_gauge_recording_rule_and_board(
    metrics: httpx.AsyncClient, topics: CommonSettings, tmp_path: Path
) -> None:
    history = sla_history()
    oracle = Oracle(history, PROBABILITIES, DEFAULT_PROBABILITY, sources=SOURCES)
    expected = oracle.sla(START, END)
    gauge = series("funnel_handoff_sla_attainment_ratio", period=CURRENT)

    await produce(topics, history)

    async def attainments() -> tuple[Any, Any]:
        funnel = (await metrics.get("/v1/funnel", params={"period": CURRENT})).json()
        samples = parse_samples((await metrics.get("/metrics")).text)
        return funnel["handoffs"]["sla"], samples.get(gauge)

    sla, exported = await eventually(
        attainments, until=lambda found: found[0]["deadlines"] == 5, timeout=30
    )
    # Five deadlines past in the quarter; three decided by them; one late, one never.
    assert expected["attainment_ratio"] == 3 / 5
    assert sla == expected
    assert exported == expected["attainment_ratio"]
    samples = parse_samples((await metrics.get("/metrics")).text)
    value = expected["attainment_ratio"]
    rule, panel = (
        f'period:funnel_handoff_sla_attainment_ratio:max{{period="{CURRENT}"}}',
        board_query("SLA attainment"),
    )
    checks = [
        {"expr": rule, "eval_time": "2m", "exp_samples": [{"labels": rule, "value": value}]},
        {"expr": panel, "eval_time": "2m", "exp_samples": [{"labels": rule, "value": value}]},
    ]

    result = promtool_test(tmp_path, [samples, samples, samples], checks)

    assert result.returncode == 0, result.stdout + result.stderr
    assert samples[series("funnel_handoff_sla_breaches_total", policy="enterprise")] == 1
    assert samples[series("funnel_handoff_escalations_total")] == 1


def deal(kind: type[Envelope], deal_id: str, at: datetime, **extra: Any) -> Envelope:
    data: dict[str, Any] = {"deal_id": deal_id, "attribution": {"source": "web"},
                            "amount_cents": 50_000_00, "currency": "USD", "stage": "proposal",
                            **extra}  # fmt: skip
    if kind in (DealWon, DealLost):
        data["closed_on"] = at.date()
    if kind is DealLost:
        data["reason"] = "timing"
    return kind.new(source="test", subject=deal_id, data=data, time=at)


async def test_a_reopened_deal_never_makes_a_counter_go_down_so_no_query_sees_a_reset(
    metrics: httpx.AsyncClient, topics: CommonSettings, tmp_path: Path
) -> None:
    deal_id = f"opp-{uuid4().hex[:8]}"
    opened_at = _in_quarter(0.9)
    hour = SPAN / 10
    steps = [
        [deal(DealOpened, deal_id, opened_at)],
        [deal(DealWon, deal_id, opened_at + hour)],
        # Reopened; and a stale update from before the win arrives late.
        [deal(DealOpened, deal_id, opened_at + 2 * hour),
         deal(DealUpdated, deal_id, opened_at + hour / 2, amount_cents=1)],
        [deal(DealLost, deal_id, opened_at + 3 * hour)],
    ]  # fmt: skip
    sent: list[Envelope] = []
    scrapes: list[dict[Series, float]] = []

    for step in steps:
        await produce(topics, step)
        sent += step
        oracle = Oracle(sent, PROBABILITIES, DEFAULT_PROBABILITY, sources=SOURCES)
        expected = {**oracle.counters(), **oracle.gauges(CURRENT)}

        async def scraped(expected: dict[Series, Any] = expected) -> dict[Series, float]:
            return parse_samples((await metrics.get("/metrics")).text)

        scrapes.append(
            await eventually(
                scraped,
                until=lambda found, expected=expected: all(  # type: ignore[misc]
                    found.get(key) == value
                    for key, value in expected.items()
                    if value is not None and key[0] != "funnel_period_end_timestamp_seconds"
                ),
                timeout=30,
            )
        )

    closed = [
        (scrape.get(series("funnel_deals_closed", period=CURRENT, outcome="won")),
         scrape.get(series("funnel_deals_closed", period=CURRENT, outcome="lost")))
        for scrape in scrapes
    ]  # fmt: skip
    assert closed == [(0, 0), (1, 0), (0, 0), (0, 1)]
    assert [scrape[series("funnel_deals_reopened_total")] for scrape in scrapes] == [0, 0, 1, 1]
    # No counter series resets at any step: an empty answer for each counter's name
    # (resets() drops the name, so one query per name); and every one was evaluated.
    checks: list[dict[str, Any]] = [
        {"expr": f"resets({name}[10m]) > 0", "eval_time": "4m", "exp_samples": []}
        for name in _counter_names(scrapes)
    ]
    checks.append(
        {"expr": "count(resets({__name__=\"funnel_deals_reopened_total\"}[10m]))",
         "eval_time": "4m", "exp_samples": [{"labels": "{}", "value": 2}]}
    )  # fmt: skip
    assert len(checks) > 10

    result = promtool_test(tmp_path, scrapes, checks)

    assert result.returncode == 0, result.stdout + result.stderr


def _counter_names(scrapes: list[dict[Series, float]]) -> list[str]:
    return sorted(
        {
            name
            for scrape in scrapes
            for name, _ in scrape
            if name.startswith("funnel_") and name.endswith(("_total", "_bucket", "_count", "_sum"))
        }
    )
