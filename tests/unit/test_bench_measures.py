"""The bench's measuring logic: breach delays from the events, percentiles, ratios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from bench.breach import breach_delays
from bench.load import percentile
from bench.measures import Figure
from bench.replay import READ
from funnel_common.events import HandoffSlaAtRisk, HandoffSlaBreached, encode_event

DUE = datetime(2026, 11, 24, 12, tzinfo=UTC)


def deadline_data(lead_id: UUID) -> dict[str, object]:
    return {
        "handoff_id": uuid4(),
        "lead_id": lead_id,
        "team": "bench",
        "rep_id": "ada",
        "due_at": DUE,
        "policy": "short",
    }


def test_breach_delays_count_only_these_leads_breaches_from_their_due_time() -> None:
    ours, earlier = uuid4(), uuid4()
    decided = DUE + timedelta(milliseconds=300)
    breach = HandoffSlaBreached.new(
        source="handoff", subject="h", time=decided, data=deadline_data(ours)
    )
    other_lead = HandoffSlaBreached.new(
        source="handoff", subject="h", time=decided, data=deadline_data(earlier)
    )
    at_risk = HandoffSlaAtRisk.new(
        source="handoff", subject="h", time=decided, data=deadline_data(ours)
    )
    read_at = DUE.timestamp() + 0.5

    found = breach_delays(
        [(read_at, encode_event(e)) for e in (breach, other_lead, at_risk)]
        + [(read_at, b"not json")],
        {ours},
    )

    assert found.decided == [pytest.approx(0.3)]
    assert found.readable == [pytest.approx(0.5)]


def test_percentile_picks_a_measured_value() -> None:
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 100.0
    assert percentile([], 0.99) != percentile([], 0.99)  # NaN: nothing was measured


def test_a_figure_is_judged_against_its_baseline() -> None:
    figure = Figure("replay", 30_000, "events/s", "plain consumption", 120_000)

    assert figure.ratio == pytest.approx(0.25)
    assert Figure("memory", 70, "MiB").ratio is None
    assert figure.as_json()["ratio"] == pytest.approx(0.25)


def test_the_replay_summary_line_gives_events_and_seconds() -> None:
    line = "read 45185 events in 2.31 s (19,561 events/s): 45185 applied, 0 duplicates"

    found = READ.search(line)

    assert found is not None
    assert (int(found[1]), float(found[2])) == (45185, 2.31)


def test_the_bench_table_shows_each_figure_against_its_baseline_and_target() -> None:
    from bench.__main__ import markdown

    table = markdown(
        [
            Figure(
                "replay events/s",
                31_000.0,
                "events/s",
                "plain consumption",
                90_000.0,
                ">= 30,000 events/s",
                True,
            ),
        ],
        "2026-12-05 16:00 UTC",
    )

    assert "| replay events/s | 31,000.0 events/s | plain consumption: 90,000.0 events/s |" in table
    assert "| 0.34x | >= 30,000 events/s met |" in table
