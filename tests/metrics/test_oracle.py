"""The oracle test: random funnel histories through the real broker, delivered in any
order and with duplicates, checked against a plain recomputation from the SET of
events (tests/metrics/oracle.py) in /v1/funnel, /v1/plan, /v1/campaigns and /metrics.

The oracle is a function of the set of events, so matching it for every drawn order
means every order gives what in-order delivery gives. Histories arrive in chunks, and
after each chunk every counter is what the oracle says for what was sent so far, and
no lower than after the chunk before: no funnel_* counter goes down, whatever arrives.
One service and one set of topics serve every example; each history has fresh ids and
the oracle recomputes over everything sent so far."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from funnel_common.events import Envelope
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.metrics.histories import histories, keyed_order
from tests.metrics.oracle import Oracle, differences
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


def quarter(offset: int) -> str:
    index = NOW.year * 4 + (NOW.month - 1) // 3 + offset
    return f"{index // 4}-Q{index % 4 + 1}"


# The exported window (previous, current, next) and one quarter before it (JSON only).
EXPORTED = [quarter(-1), quarter(0), quarter(1)]
CHECKED = [quarter(-2), *EXPORTED]


@pytest.fixture
async def metrics(database_url: str, topics: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_metrics(metrics_settings(database_url, topics)) as client:
        yield client


def oracle_of(events: list[Envelope]) -> Oracle:
    return Oracle(events, PROBABILITIES, DEFAULT_PROBABILITY, now=utc_now(), sources=SOURCES)


async def json_differences(client: httpx.AsyncClient, oracle: Oracle) -> list[str]:
    found = []
    for period in CHECKED:
        answer = await client.get("/v1/funnel", params={"period": period})
        assert answer.status_code == 200, answer.text
        found += differences(oracle.funnel(period), answer.json(), period)
        # Each campaign's row is its slice of the same figures.
        campaigns = await client.get("/v1/campaigns", params={"period": period})
        assert campaigns.status_code == 200, campaigns.text
        found += differences(
            oracle.campaigns(period), campaigns.json()["items"], f"{period} campaigns"
        )
    plan = await client.get("/v1/plan", params={"period": quarter(0)})
    found += differences(oracle.plan(quarter(0)), plan.json(), "plan")
    return found


def sample_differences(expected: dict[Series, Any], samples: dict[Series, float]) -> list[str]:
    found = []
    for key, value in expected.items():
        seen = samples.get(key)
        if value is None or seen is None:
            if not (value == seen or (value == 0 and seen is None)):
                found.append(f"{key}: expected {value!r}, got {seen!r}")
        elif not (seen == value or abs(seen - value) <= 1e-9):
            found.append(f"{key}: expected {value!r}, got {seen!r}")
    return found


def counters(samples: dict[Series, float]) -> dict[Series, float]:
    return {
        key: value
        for key, value in samples.items()
        if key[0].startswith("funnel_") and key[0].endswith(("_total", "_bucket", "_count", "_sum"))
    }


async def scrape(client: httpx.AsyncClient) -> dict[Series, float]:
    return parse_samples((await client.get("/metrics")).text)


@pytest.mark.timeout(600)
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each run costs broker time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(NOW), data=st.data())
async def test_any_order_and_duplication_gives_the_oracles_figures_and_counters_never_drop(
    metrics: httpx.AsyncClient, topics: CommonSettings, history: list[Envelope], data: Any
) -> None:
    sent: list[Envelope] = _sent_so_far(topics)
    order = data.draw(st.permutations(range(len(history))), label="delivery order")
    delivered = keyed_order(history, order)
    again = data.draw(
        st.lists(st.sampled_from(history), max_size=4) if history else st.just([]),
        label="duplicates",
    )
    cut = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=2), label="chunks"))
    before = counters(await scrape(metrics))

    for chunk in _chunks([*delivered, *again], cut):
        await produce(topics, chunk)
        sent.extend(chunk)
        expected = oracle_of(sent).counters()

        async def mismatches(expected: dict[Series, Any] = expected) -> list[str]:
            return sample_differences(expected, await scrape(metrics))

        assert await eventually(mismatches, until=lambda found: not found, timeout=30) == []
        now = counters(await scrape(metrics))
        assert [key for key, value in before.items() if now.get(key, 0) < value] == []
        before = now

    oracle = oracle_of(sent)

    async def everything() -> list[str]:
        expected: dict[Series, float | None] = {
            **oracle.counters(),
            series("funnel_reporting_currency_info", currency="USD"): 1,
        }
        for period in EXPORTED:
            expected |= oracle.gauges(period)
        return await json_differences(metrics, oracle) + sample_differences(
            expected, await scrape(metrics)
        )

    assert await eventually(everything, until=lambda found: not found, timeout=30) == []


def _chunks(events: list[Envelope], cut: list[int]) -> list[list[Envelope]]:
    bounds = [0, *cut, len(events)]
    return [events[start:end] for start, end in itertools.pairwise(bounds) if end > start]


_SENT: dict[str, list[Envelope]] = {}


def _sent_so_far(topics: CommonSettings) -> list[Envelope]:
    """Every event sent to this test's topics by earlier examples."""
    return _SENT.setdefault(topics.kafka_topic_prefix, [])
