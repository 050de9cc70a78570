"""GET /v1/campaigns and its CSV on a quarter small enough to check by hand (three
campaigns, tests/metrics/stories.py): each row is the oracle's, the rows add up to
/v1/funnel's totals, sorting and bad input, and a spreadsheet-safe export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from funnel_common.events import LeadCaptured
from funnel_common.periods import period_of_instant
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.metrics.oracle import Oracle, differences
from tests.metrics.stories import three_campaigns
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    metrics_settings,
    produce,
    running_metrics,
)

NOW = utc_now()
QUARTER = str(period_of_instant(NOW, "UTC"))
HOSTILE = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.fixture
async def metrics(database_url: str, topics: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    events = three_campaigns(NOW)
    lead = uuid4()
    events.append(
        LeadCaptured.new(
            source="lead-intake", subject=lead, time=NOW,
            data={"lead_id": lead, "form_id": "f", "profile": {"email": "x@example.com"},
                  "attribution": {"source": "web", "campaign": HOSTILE}},
        )
    )  # fmt: skip
    oracle = Oracle(events, PROBABILITIES, DEFAULT_PROBABILITY, now=utc_now())
    async with running_metrics(metrics_settings(database_url, topics)) as client:
        await produce(topics, events)

        async def mismatches() -> list[str]:
            answer = await client.get("/v1/campaigns", params={"period": QUARTER})
            return differences(oracle.campaigns(QUARTER), answer.json()["items"])

        await eventually(mismatches, until=lambda found: not found, timeout=30)
        yield client


async def _items(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    answer = await client.get("/v1/campaigns", params={"period": QUARTER, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_each_campaign_earns_what_its_events_say(metrics: httpx.AsyncClient) -> None:
    items = await _items(metrics)

    assert [(item["source"], item["campaign"]) for item in items] == [
        ("webinar", "launch"),
        ("web", None),
        ("ads", "spring"),
        ("web", HOSTILE),
    ]
    launch, web, spring, _ = items
    assert launch["cohort"] == {"captured": 4, "qualified": 4, "accepted": 4, "opened": 2, "won": 1}
    assert launch["conversion"]["captured_to_won"] == 0.25
    assert (launch["won"], launch["lost"], launch["won_value_cents"]) == (1, 1, 120_000)
    assert launch["win_rate"] == {"count": 0.5, "value": 0.8}
    assert launch["median_accept_seconds"] == 750.0  # 300, 600, 900, 1200
    assert launch["sla"] == {"deadlines": 4, "met": 4, "attainment_ratio": 1.0}
    assert spring["sla"] == {"deadlines": 3, "met": 2, "attainment_ratio": 2 / 3}
    assert spring["top_rejection_reasons"] == [
        {"reason": "no_budget", "count": 1},
        {"reason": "not_a_fit", "count": 1},
    ]
    assert (spring["rejected"], spring["median_accept_seconds"]) == (2, None)
    assert (web["won_value_cents"], web["cohort"]["captured"]) == (50_000, 1)


async def test_the_rows_add_up_to_the_funnel(metrics: httpx.AsyncClient) -> None:
    items = await _items(metrics)
    funnel = (await metrics.get("/v1/funnel", params={"period": QUARTER})).json()

    total = funnel["stages"]["period"]["total"]
    for stage in ("captured", "qualified", "accepted", "opened", "won"):
        assert sum(item["cohort"][stage] for item in items) == total["cohort"][stage]
    assert sum(item["won_value_cents"] for item in items) == funnel["revenue"]["won_value_cents"]
    assert sum(item["sla"]["deadlines"] for item in items) == funnel["handoffs"]["sla"]["deadlines"]
    assert sum(item["sla"]["met"] for item in items) == funnel["handoffs"]["sla"]["met"]
    assert sum(item["rejected"] for item in items) == funnel["handoffs"]["rejected"]


async def test_rows_sort_by_any_column_with_empty_values_last(metrics: httpx.AsyncClient) -> None:
    def names(items: list[dict[str, Any]]) -> list[str | None]:
        return [item["campaign"] for item in items]

    by_sla = await _items(metrics, sort="sla_attainment", order="asc")
    by_median = await _items(metrics, sort="median_accept_seconds")
    by_captured = await _items(metrics, sort="captured", order="asc")

    assert names(by_sla) == ["spring", "launch", None, HOSTILE]  # no deadline: last
    assert names(by_median) == ["launch", "spring", None, HOSTILE]  # ties by name
    assert names(by_captured) == [None, HOSTILE, "spring", "launch"]

    for params in ({"sort": "colour"}, {"order": "up"}, {"period": "2026-Q5"}):
        answer = await metrics.get("/v1/campaigns", params={"period": QUARTER, **params})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


async def test_the_csv_is_the_same_rows_safe_for_a_spreadsheet(metrics: httpx.AsyncClient) -> None:
    answer = await metrics.get("/v1/campaigns.csv", params={"period": QUARTER, "sort": "captured"})

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"campaigns-{QUARTER}.csv" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["campaign"] for row in rows] == ["launch", "spring", "", "'" + HOSTILE]
    launch = rows[0]
    assert (launch["captured"], launch["won_value_cents"], launch["median_accept_seconds"]) == (
        "4",
        "120000",
        "750.0",
    )
    assert rows[1]["top_rejection_reasons"] == "no_budget (1), not_a_fit (1)"
