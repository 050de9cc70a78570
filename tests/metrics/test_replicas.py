"""Two metrics replicas: each exports the global figures, so max() across them is right,
with both running and after one goes away (its partitions move to the other)."""

from __future__ import annotations

import contextlib

import pytest

from funnel_common.settings import CommonSettings
from tests.helpers import eventually
from tests.metrics.oracle import Oracle
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    metrics_settings,
    parse_samples,
    produce,
    running_metrics,
    series,
)
from tests.metrics.test_service import CURRENT, matches, small_funnel

CAPTURED = series("funnel_leads_captured_total")
OPEN = series("funnel_pipeline_open_value", period=CURRENT)


@pytest.mark.both_brokers
async def test_two_replicas_export_the_same_global_figures_before_and_after_a_rebalance(
    database_url: str, topics: CommonSettings
) -> None:
    settings = metrics_settings(database_url, topics)
    # Enough distinct keys that both replicas' partitions get events.
    history = [event for _ in range(4) for event in small_funnel()]
    oracle = Oracle(history, PROBABILITIES, DEFAULT_PROBABILITY)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(running_metrics(settings))
        async with running_metrics(settings) as second:
            await produce(topics, history)
            for replica in (first, second):
                await eventually(
                    lambda replica=replica: matches(replica, oracle, CURRENT),  # type: ignore[misc]
                    until=lambda found: not found,
                    timeout=20,
                )
            scrapes = [parse_samples((await r.get("/metrics")).text) for r in (first, second)]

            # Each replica exports the whole figure, so max() (not sum()) is the answer.
            assert scrapes[0][CAPTURED] == scrapes[1][CAPTURED] == oracle.counters()[CAPTURED]
            assert (
                max(s[OPEN] for s in scrapes)
                == oracle.period(CURRENT)["revenue"]["open_pipeline_cents"]
            )

        # The second replica is gone; the first takes over its partitions.
        more = [event for _ in range(3) for event in small_funnel(days_ago=1)]
        await produce(topics, more)
        oracle = Oracle([*history, *more], PROBABILITIES, DEFAULT_PROBABILITY)
        await eventually(
            lambda: matches(first, oracle, CURRENT), until=lambda found: not found, timeout=30
        )
        after = parse_samples((await first.get("/metrics")).text)
        assert after[CAPTURED] == oracle.counters()[CAPTURED]
