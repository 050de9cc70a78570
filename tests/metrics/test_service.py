"""The metrics API at its edges, evented targets, restarts and duplicate delivery."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest

from funnel_common.auth import Role
from funnel_common.events import (
    DLQ_TOPIC,
    TARGETS_TOPIC,
    DealOpened,
    DealWon,
    Envelope,
    LeadCaptured,
    TargetSet,
    decode_event,
)
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.integration.access import issued_token
from tests.integration.kafka_helpers import read_topic
from tests.metrics.oracle import Oracle, differences
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    metrics_settings,
    produce,
    running_metrics,
)

NOW = utc_now()
CURRENT = f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"


@pytest.fixture
async def metrics(database_url: str, topics: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_metrics(metrics_settings(database_url, topics)) as client:
        yield client


async def bearer(database_url: str, settings: CommonSettings, role: Role) -> dict[str, str]:
    """A token metrics knows (issued by handoff and heard on funnel.access)."""
    token = await issued_token(database_url, "metrics", settings.auth_secret, role=role)
    return {"authorization": f"Bearer {token}"}


def small_funnel(days_ago: int = 3) -> list[Envelope]:
    """Two leads, one deal won this quarter, one open deal expected this quarter."""
    when = NOW - timedelta(days=days_ago)
    attribution = {"source": "web", "campaign": "spring"}
    events: list[Envelope] = []
    for _ in range(2):
        lead = uuid4()
        events.append(
            LeadCaptured.new(
                source="test",
                subject=lead,
                time=when,
                data={
                    "lead_id": lead,
                    "form_id": "f",
                    "attribution": attribution,
                    "profile": {"email": "x@example.com"},
                },
            )
        )
    for kind, amount in ((DealWon, 40_000_00), (DealOpened, 90_000_00)):
        deal = f"opp-{uuid4().hex[:8]}"
        data = {
            "deal_id": deal,
            "attribution": attribution,
            "amount_cents": amount,
            "currency": "USD",
            "stage": "proposal",
            "expected_close_date": NOW.date(),
        }
        if kind is DealWon:
            data["closed_on"] = NOW.date()
        events.append(kind.new(source="test", subject=deal, time=when, data=data))
    return events


async def matches(client: httpx.AsyncClient, oracle: Oracle, period: str) -> list[str]:
    answer = await client.get("/v1/funnel", params={"period": period})
    return differences(oracle.funnel(period), answer.json())


@pytest.mark.parametrize(
    "path",
    [
        "/v1/funnel?period=2026-Q5",
        "/v1/plan?period=last-quarter",
        "/v1/funnel?period=9999-Q4",
        "/v1/plan?period=9999-Q4",
        "/v1/funnel?period=1969-Q4",
        "/v1/funnel?period=0001-Q1",
        "/v1/plan?period=2026-Q1%0A",
    ],
)
async def test_a_bad_period_is_a_precise_422_problem(metrics: httpx.AsyncClient, path: str) -> None:
    answer = await metrics.get(path)

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "/problems/invalid-period"
    assert answer.json()["errors"][0]["field"] == "period"


@pytest.mark.parametrize("timezone", ["Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT+12"])
async def test_the_edge_quarters_answer_and_the_ones_beyond_are_refused_in_any_time_zone(
    database_url: str, topics: CommonSettings, timezone: str
) -> None:
    settings = metrics_settings(
        database_url, topics.model_copy(update={"reporting_timezone": timezone})
    )
    async with running_metrics(settings, worker=False) as client:
        edges = [await client.get(f"/v1/{path}", params={"period": period})
                 for path in ("funnel", "plan") for period in ("1970-Q1", "9998-Q4")]  # fmt: skip
        beyond = [await client.get(f"/v1/{path}", params={"period": period})
                  for path in ("funnel", "plan") for period in ("0001-Q1", "9999-Q4")]  # fmt: skip

    assert [answer.status_code for answer in edges] == [200] * 4
    assert [answer.status_code for answer in beyond] == [422] * 4


async def test_only_admins_set_the_company_target(
    metrics: httpx.AsyncClient, database_url: str, topics: CommonSettings
) -> None:
    body = {"amount_cents": 100_000_00}
    path = f"/v1/targets/{CURRENT}"

    anonymous = await metrics.put(path, json=body)
    rep = await metrics.put(path, json=body, headers=await bearer(database_url, topics, "rep"))
    manager = await metrics.put(
        path, json=body, headers=await bearer(database_url, topics, "manager")
    )
    admin = await metrics.put(path, json=body, headers=await bearer(database_url, topics, "admin"))

    assert anonymous.status_code == 401
    assert rep.status_code == 403
    assert manager.status_code == 403  # a team's manager does not set the company's target
    assert admin.status_code == 200


@pytest.mark.parametrize(
    ("period", "body", "field"),
    [
        ("2026-Q7", {"amount_cents": 1}, "period"),
        ("9999-Q4", {"amount_cents": 1}, "period"),
        ("1969-Q4", {"amount_cents": 1}, "period"),
        (CURRENT, {"amount_cents": -5}, "amount_cents"),
        (CURRENT, {"amount_cents": 1.5}, "amount_cents"),
        (CURRENT, {"amount_cents": True}, "amount_cents"),
        (CURRENT, {"amount_cents": "100"}, "amount_cents"),
        (CURRENT, {"amount_cents": 1.0}, "amount_cents"),
        (CURRENT, {"amount_cents": 1, "currency": "EUR"}, "currency"),
        (CURRENT, {"amount_cents": 1, "stretch": True}, "stretch"),
    ],
)
async def test_a_bad_target_is_refused_with_the_offending_field(
    metrics: httpx.AsyncClient,
    database_url: str,
    topics: CommonSettings,
    period: str,
    body: object,
    field: str,
) -> None:
    admin = await bearer(database_url, topics, "admin")
    answer = await metrics.put(f"/v1/targets/{period}", json=body, headers=admin)

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in answer.json()["errors"]] == [field]


async def test_a_target_is_evented_and_drives_coverage_and_the_plan(
    metrics: httpx.AsyncClient, database_url: str, topics: CommonSettings
) -> None:
    history = small_funnel()
    await produce(topics, history)

    answer = await metrics.put(
        f"/v1/targets/{CURRENT}",
        json={"amount_cents": 70_000_00},
        headers=await bearer(database_url, topics, "admin"),
    )

    assert answer.status_code == 200
    records = await read_topic(topics, TARGETS_TOPIC, expect=1)
    published = [decode_event(record.value) for record in records]
    assert [type(event) for event in published] == [TargetSet]
    assert str(published[0].id) == answer.json()["event_id"]
    oracle = Oracle([*history, *published], PROBABILITIES, DEFAULT_PROBABILITY)
    await eventually(
        lambda: matches(metrics, oracle, CURRENT), until=lambda found: not found, timeout=15
    )
    plan = (await metrics.get("/v1/plan", params={"period": CURRENT})).json()
    assert plan == {"period": CURRENT, "currency": "USD", **oracle.funnel(CURRENT)["plan"]}
    assert plan["leads_needed"] is not None


@pytest.mark.both_brokers
async def test_figures_survive_a_restart_and_redelivery_changes_nothing(
    database_url: str, topics: CommonSettings
) -> None:
    settings = metrics_settings(database_url, topics)
    first = small_funnel(days_ago=2)
    oracle = Oracle(first, PROBABILITIES, DEFAULT_PROBABILITY)
    async with running_metrics(settings) as client:
        await produce(topics, first)
        await eventually(
            lambda: matches(client, oracle, CURRENT), until=lambda found: not found, timeout=15
        )

    second = small_funnel(days_ago=1)
    oracle = Oracle([*first, *second], PROBABILITIES, DEFAULT_PROBABILITY)
    async with running_metrics(settings) as client:
        # Right after the restart, before anything new arrived: nothing lost.
        assert (
            await matches(client, Oracle(first, PROBABILITIES, DEFAULT_PROBABILITY), CURRENT) == []
        )
        # Everything again (same ids), plus new events.
        await produce(topics, [*first, *second])
        await eventually(
            lambda: matches(client, oracle, CURRENT),
            until=lambda found: not found,
            timeout=20,
        )


@pytest.mark.both_brokers
async def test_a_deal_in_another_currency_is_parked_in_the_dlq_and_counts_nowhere(
    metrics: httpx.AsyncClient, topics: CommonSettings
) -> None:
    history = small_funnel()
    deal = f"opp-{uuid4().hex[:8]}"
    foreign = DealOpened.new(
        source="test",
        subject=deal,
        data={
            "deal_id": deal,
            "attribution": {"source": "web"},
            "amount_cents": 1_000_00,
            "currency": "EUR",
            "stage": "proposal",
            "expected_close_date": NOW.date(),
        },
    )

    await produce(topics, [foreign, *history])

    parked = await read_topic(topics, DLQ_TOPIC, expect=1, timeout=20)
    assert [json.loads(record.value)["data"]["kind"] for record in parked] == ["handler_failed"]
    oracle = Oracle(history, PROBABILITIES, DEFAULT_PROBABILITY)
    await eventually(
        lambda: matches(metrics, oracle, CURRENT), until=lambda found: not found, timeout=15
    )


async def test_without_a_period_the_funnel_is_the_current_quarter(
    metrics: httpx.AsyncClient,
) -> None:
    answer = await metrics.get("/v1/funnel")

    assert answer.status_code == 200
    assert answer.json()["period"] == CURRENT
