"""A real Prometheus scraping a real `funnel dev`: every shipped query runs and parses.

`funnel dev` runs as a subprocess on free ports (each service as a web and a worker
process), gets a little traffic (leads, a refused request, an unknown path, one
undecodable Kafka record that both consumers park in the DLQ, and a small `funnel seed`
with real SLA breaches), and Prometheus (the Debian package) scrapes all six processes
every second with deploy/prometheus/prometheus.yml, its targets pointed at those ports,
and the rules loaded (funnel_tools.prometheus). Then every dashboard query and every
rule expression goes through the HTTP API.

A query must return data unless it reads a metric that no service exports yet
(NOT_EXPORTED_YET); that list names the features still being built, and the test
fails once a listed metric appears, so the list shrinks as they land.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from bench.breach import admin_token
from funnel_common.events import (
    HANDOFFS_TOPIC,
    AccountActivated,
    AccountArrChanged,
    Attribution,
    DealLost,
    DealOpened,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffRejected,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_tools.dashboards import Query, dashboard_queries, rule_queries, rules
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import free_port, wait_until
from funnel_tools.prometheus import Prometheus, platform_targets, run_seed, start_prometheus
from tests.conftest import require_system_tool

pytestmark = pytest.mark.e2e

# Metrics named in the contract (or assumed by the boards) that no service exports yet,
# each with the feature that will export it. A query reading one of these may be
# empty; every other query must return data. Remove an entry when its feature lands.
NOT_EXPORTED_YET: dict[str, str] = {}

# Metrics that exist only in production, from components `funnel dev` does not run.
PRODUCTION_ONLY: dict[str, str] = {
    "kafka_consumergroup_lag": "Strimzi's Kafka Exporter (deploy/k8s/base/kafka.yaml)",
}

LEADS = [{"email": f"reader{number}@example.com", "source": "webinar"} for number in range(5)]
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan", "le",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (functions, labels and keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()[:1]
        if following != "(" and match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def _recorded() -> dict[str, set[str]]:
    return {rule["record"]: metric_names(rule["expr"]) for rule in rules() if "record" in rule}


def source_metrics(expr: str) -> set[str]:
    """The exported metrics behind an expression, looking through recording rules."""
    recorded = _recorded()
    pending, found = list(metric_names(expr)), set()
    while pending:
        name = pending.pop()
        if name in recorded:
            pending.extend(recorded[name])
        else:
            found.add(name)
    return found


async def _produce_undecodable_record(settings: CommonSettings) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait("funnel.leads", value=b"not an event", key=b"poison")
    finally:
        await producer.stop()


def _this_quarter() -> tuple[str, date, date]:
    today = datetime.now(UTC).date()
    first_month = 3 * ((today.month - 1) // 3) + 1
    start = date(today.year, first_month, 1)
    end = (start + timedelta(days=95)).replace(day=1) - timedelta(days=1)
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}", start, end


def _funnel_events() -> list[Envelope]:
    """Deals, decisions and accounts, so every funnel figure has something to show."""
    _, start, end = _this_quarter()
    today = datetime.now(UTC).date()
    attribution = Attribution(source="webinar", campaign="launch")
    deal = {"attribution": attribution, "currency": "USD", "stage": "proposal"}
    handoff = {"lead_id": uuid4(), "team": "emea", "rep_id": "rep-1", "attribution": attribution}
    return [
        DealOpened.new(source="test", subject="d1", data={
            **deal, "deal_id": "d1", "amount_cents": 900_000_00, "expected_close_date": end}),
        DealWon.new(source="test", subject="d2", data={
            **deal, "deal_id": "d2", "amount_cents": 120_000_00, "closed_on": today}),
        DealLost.new(source="test", subject="d3", data={
            **deal, "deal_id": "d3", "amount_cents": 80_000_00, "closed_on": today,
            "reason": "no_budget"}),
        HandoffAccepted.new(source="test", subject="h1", data={
            **handoff, "handoff_id": uuid4(), "business_seconds_to_decision": 300,
            "within_sla": True}),
        HandoffRejected.new(source="test", subject="h2", data={
            **handoff, "handoff_id": uuid4(), "reason": "not_a_fit",
            "business_seconds_to_decision": 900, "within_sla": False}),
        AccountActivated.new(source="test", subject="a1",
            time=datetime.combine(start - timedelta(days=30), time(), UTC),
            data={"account_id": "a1", "arr_cents": 100_000_00, "currency": "USD"}),
        AccountArrChanged.new(source="test", subject="a1", data={
            "account_id": "a1", "arr_cents": 110_000_00, "currency": "USD"}),
    ]  # fmt: skip


async def _produce_funnel_events(settings: CommonSettings, *, handoffs_only: bool = False) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        for event in _funnel_events():
            if handoffs_only and event.topic != HANDOFFS_TOPIC:
                continue
            await producer.send_and_wait(event.topic, value=encode_event(event), key=event.key)
    finally:
        await producer.stop()


def _send_traffic(platform: DevPlatform) -> None:
    intake = platform.url("intake", "")
    for lead in LEADS:
        assert httpx.post(f"{intake}/v1/leads", json=lead, timeout=10).status_code == 202
    assert httpx.post(f"{intake}/v1/leads", json={"source": "webinar"}).status_code == 422
    assert httpx.get(f"{intake}/no-such-page").status_code == 404
    for service in ("intake", "handoff", "metrics"):
        assert httpx.get(platform.url(service, "/healthz")).status_code == 200
    asyncio.run(_produce_undecodable_record(platform.client_settings()))
    asyncio.run(_produce_funnel_events(platform.client_settings()))
    period, _, _ = _this_quarter()
    # An admin token as an operator mints it; metrics takes it once its worker has heard
    # of it on funnel.access (one consumer hop).
    token = admin_token(platform)
    answers: list[httpx.Response] = []

    def target_set() -> bool:
        answers.append(
            httpx.put(
                platform.url("metrics", f"/v1/targets/{period}"),
                json={"amount_cents": 500_000_00},
                headers={"authorization": f"Bearer {token}"},
                timeout=10,
            )
        )
        return answers[-1].status_code != 401

    wait_until(target_set, timeout=30, what="metrics to know the new admin token")
    assert answers[-1].status_code == 200, answers[-1].text


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require_system_tool("prometheus", "runs the shipped queries against live services")
    tmp = tmp_path_factory.mktemp("live-prometheus")
    platform = start_dev(tmp / "funnel", free_ports(), tmp / "dev.out")
    server: subprocess.Popen[bytes] | None = None
    try:
        server, live = start_prometheus(binary, tmp, platform_targets(platform), free_port())
        _send_traffic(platform)
        # The seed's SLA breaches are real (handoff's scanner fires them), the only
        # breaches here: the SLA panels must show them.
        run_seed(platform, "--seed", "3", "--leads", "30", "--breach-share", "0.3", "--run", "live")
        wait_until(
            lambda: (
                live.has_data('up{job=~"lead-intake|handoff|metrics"} == 1', count=6)
                and live.has_data("max(funnel_leads_captured_total) >= 5")
                and live.has_data('funnel_events_consumed_total{outcome="dead_lettered"}', count=2)
                and live.has_data("rate(funnel_http_requests_total[1m]) > 0")
            ),
            timeout=60,
            what="Prometheus to have scraped the traffic",
        )
        # A second round of decisions once the counters were scraped, so that the
        # increase()-based handoff ratios see the counters move, as in real traffic.
        wait_until(
            lambda: live.has_data("max(funnel_handoffs_total) > 0"),
            timeout=30,
            what="the first handoff decisions to be scraped",
        )
        asyncio.run(_produce_funnel_events(platform.client_settings(), handoffs_only=True))
        wait_until(
            lambda: live.has_data("max(increase(funnel_handoffs_total[5m])) > 0"),
            timeout=60,
            what="the handoff counters to move",
        )
        yield live
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        platform.stop()


SHIPPED = dashboard_queries() + rule_queries()
JOBS = ("lead-intake", "handoff", "metrics")


def _jobs_and_components(prometheus: Prometheus, expr: str) -> set[tuple[str, str]]:
    return {
        (series["metric"]["job"], series["metric"]["component"])
        for series in prometheus.series(expr)
    }


def test_each_service_is_scraped_as_a_web_and_a_worker_process(prometheus: Prometheus) -> None:
    up = _jobs_and_components(prometheus, "up == 1")

    assert up == {(job, component) for job in JOBS for component in ("web", "worker")}


def test_events_are_published_and_consumed_by_the_workers_and_http_served_by_the_web(
    prometheus: Prometheus,
) -> None:
    published = "sum by (job, component) (funnel_outbox_published_total) > 0"
    wait_until(
        lambda: prometheus.has_data(published, count=3),
        timeout=30,
        what="every service's relay to have published",
    )

    assert _jobs_and_components(prometheus, published) == {(job, "worker") for job in JOBS}
    consumed = "sum by (job, component) (funnel_events_consumed_total)"
    # lead-intake's worker consumes too: the tokens on funnel.access.
    assert _jobs_and_components(prometheus, consumed) == {(job, "worker") for job in JOBS}
    served = "sum by (job, component) (funnel_http_requests_total)"
    assert _jobs_and_components(prometheus, served) == {(job, "web") for job in JOBS}
    # The funnel figures and handoff's own gauges come from the web processes.
    figures = "count by (job, component) (funnel_leads_captured_total or funnel_handoff_open)"
    exported_by = _jobs_and_components(prometheus, figures)
    assert ("metrics", "web") in exported_by
    assert exported_by <= {("metrics", "web"), ("handoff", "web")}


def test_the_not_exported_yet_list_holds_only_missing_metrics(prometheus: Prometheus) -> None:
    exported = prometheus.names()

    assert exported & set(NOT_EXPORTED_YET) == set(), "now exported: remove from NOT_EXPORTED_YET"
    assert "funnel_leads_captured_total" in exported


def test_every_series_a_query_reads_is_exported_or_listed_as_not_yet(
    prometheus: Prometheus,
) -> None:
    exported = prometheus.names()
    read = set().union(*(source_metrics(query.expr) for query in SHIPPED))

    unknown = read - exported - set(NOT_EXPORTED_YET) - set(PRODUCTION_ONLY)
    assert unknown == set(), "typo, or a metric nobody exports"


@pytest.mark.parametrize("query", SHIPPED, ids=str)
def test_query_parses_and_returns_data(prometheus: Prometheus, query: Query) -> None:
    body = prometheus.query(query.expr)

    assert body["status"] == "success", body
    may_be_empty = set(NOT_EXPORTED_YET) | set(PRODUCTION_ONLY)
    if query.kind == "alert" or source_metrics(query.expr) & may_be_empty:
        return  # may be empty: an alert that does not fire, or a metric not here (yet)
    wait_until(
        lambda: prometheus.has_data(query.expr),
        timeout=15,
        what=f"data for {query.origin}: {query.expr}",
    )


BY_SOURCE = [query for query in SHIPPED if "by (source)" in query.expr]


@pytest.mark.parametrize("query", BY_SOURCE, ids=str)
def test_by_source_queries_split_by_source(prometheus: Prometheus, query: Query) -> None:
    # A `by (source)` over a series without the label still returns data: one series
    # with no source, which the test above cannot tell from a real split.
    wait_until(lambda: prometheus.has_data(query.expr), timeout=15, what=f"data for {query.origin}")

    assert all(series["metric"].get("source") for series in prometheus.series(query.expr))


def test_rules_load_and_evaluate_without_errors(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    wait_until(
        lambda: all(rule.get("lastEvaluation", "").startswith("20") for rule in evaluated()),
        timeout=15,
        what="every rule evaluated once",
    )

    loaded = evaluated()
    assert len(loaded) == len(rules())
    assert [rule for rule in loaded if rule["health"] != "ok"] == []


def test_a_dead_lettered_event_raises_the_dlq_alert(prometheus: Prometheus) -> None:
    wait_until(
        lambda: prometheus.has_data('ALERTS{alertname="FunnelDeadLetters"}', count=2),
        timeout=15,
        what="FunnelDeadLetters for the handoff and metrics groups",
    )

    groups = {
        series["metric"]["group"]
        for series in prometheus.series('ALERTS{alertname="FunnelDeadLetters"}')
    }
    assert groups == {"handoff", "metrics"}
    assert prometheus.series('ALERTS{alertname="FunnelServiceDown"}') == []


def test_seeded_sla_breaches_show_on_the_sla_panels(prometheus: Prometheus) -> None:
    # The panels' own expressions, as subqueries over the run: the breaches moved them.
    queries = {query.origin: query.expr for query in SHIPPED}
    breaches = queries["revenue-funnel: Handoffs by outcome [B]"]
    attainment = queries["revenue-funnel: SLA attainment [A]"]

    wait_until(
        lambda: (
            prometheus.has_data(f"max_over_time(({breaches})[10m:1s]) > 0")
            and prometheus.has_data(f"min_over_time(({attainment})[10m:1s]) < 1")
        ),
        timeout=30,
        what="the seeded breaches on the SLA panels",
    )

    assert prometheus.series("max(funnel_handoff_sla_breaches_total) > 0")


def test_metric_names_are_series_not_functions_labels_or_durations() -> None:
    expr = (
        'sum by (group) (x{a="b"} offset 10m) / on () group_left y > 1e3 '
        "and histogram_quantile(0.9, max by (le) (rate(z_bucket[5m])))"
    )

    assert metric_names(expr) == {"x", "y", "z_bucket"}
    assert source_metrics("funnel:handoff_sla_attainment_ratio:increase1d") == {
        "funnel_handoff_sla_deadlines_met_total",
        "funnel_handoff_sla_deadlines_total",
    }
