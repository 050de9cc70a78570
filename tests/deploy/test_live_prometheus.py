"""A real Prometheus scraping a real `funnel dev`: every shipped query runs and parses.

`funnel dev` runs as a subprocess on free ports, gets a little traffic (leads, a
refused request, an unknown path, one undecodable Kafka record that both consumers
park in the DLQ), and Prometheus (the Debian package) scrapes it every second with
deploy/prometheus/prometheus.yml, its targets pointed at those ports, and the rules
loaded. Then every dashboard query and every rule expression goes through the HTTP API.

A query must return data unless it reads a metric that no service exports yet
(NOT_EXPORTED_YET); that list names the features still being built, and the test
fails once a listed metric appears, so the list shrinks as they land.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from funnel_common.embedded import free_port, wait_until
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from tests.conftest import require_system_tool
from tests.deploy.queries import (
    PROMETHEUS_DIR,
    Query,
    dashboard_queries,
    rule_queries,
    rules,
)

pytestmark = pytest.mark.e2e

# Metrics named in the contract (or assumed by the boards) that no service exports yet,
# each with the feature that will export it. A query reading one of these may be
# empty; every other query must return data. Remove an entry when its feature lands.
NOT_EXPORTED_YET: dict[str, str] = {
    "funnel_revenue_target": "metrics: targets (PUT /v1/targets)",
    "funnel_pipeline_coverage_ratio": "metrics: plan",
    "funnel_win_rate_ratio": "metrics: deal projection",
    "funnel_retention_ratio": "metrics: account projection",
    "funnel_leads_needed": "metrics: plan",
    "funnel_consumer_lag_messages": "common: consumer lag gauge",
    "funnel_db_pool_connections": "common: database pool gauges",
    "funnel_db_pool_max_connections": "common: database pool gauges",
}

# Exported, but ratios over decided handoffs divide by "> 0": empty until a rep decides a
# handoff, and this test only posts leads.
EMPTY_UNTIL_A_HANDOFF_IS_DECIDED = {
    "funnel_handoffs_total",
    "funnel:handoffs_decided:increase1d",
    "funnel:handoff_acceptance_ratio:increase1d",
    "funnel:handoff_sla_attainment_ratio:increase1d",
    "funnel:handoff_sla_breach_ratio:increase1h",
}

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


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        body: dict[str, Any] = answer.json()
        return body

    def series(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def names(self) -> set[str]:
        body = httpx.get(f"{self.url}/api/v1/label/__name__/values", timeout=10).json()
        return set(body["data"])


def _start_funnel_dev(tmp: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FUNNEL_DEV_DATA_DIR": str(tmp / "funnel"),
        "FUNNEL_DEV_POSTGRES_PORT": str(ports["postgres"]),
        "FUNNEL_DEV_BROKER_PORT": str(ports["broker"]),
        "FUNNEL_DEV_INTAKE_PORT": str(ports["lead-intake"]),
        "FUNNEL_DEV_HANDOFF_PORT": str(ports["handoff"]),
        "FUNNEL_DEV_METRICS_PORT": str(ports["metrics"]),
    }
    output = tmp / "dev.out"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("funnel")), "dev"],
        env=env,
        stdout=output.open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_until(
        lambda: "Press Ctrl-C" in output.read_text() or process.poll() is not None,
        timeout=90,
        what="funnel dev to be ready",
    )
    assert process.poll() is None, output.read_text()
    return process


def _prometheus_config(ports: dict[str, int]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the test's ports and a one-second rhythm."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = []
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    return config


def _fast_rule_files(directory: Path) -> list[str]:
    """The shipped rules, evaluated every second instead of every 30s or minute."""
    paths = []
    for source in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        groups = yaml.safe_load(source.read_text())
        for group in groups["groups"]:
            group["interval"] = "1s"
        target = directory / source.name
        target.write_text(yaml.safe_dump(groups))
        paths.append(str(target))
    return paths


async def _produce_undecodable_record(bootstrap: str) -> None:
    producer = new_producer(CommonSettings(kafka_bootstrap_servers=bootstrap))
    await producer.start()
    try:
        await producer.send_and_wait("funnel.leads", value=b"not an event", key=b"poison")
    finally:
        await producer.stop()


def _send_traffic(ports: dict[str, int]) -> None:
    intake = f"http://127.0.0.1:{ports['lead-intake']}"
    for lead in LEADS:
        assert httpx.post(f"{intake}/v1/leads", json=lead, timeout=10).status_code == 202
    assert httpx.post(f"{intake}/v1/leads", json={"source": "webinar"}).status_code == 422
    assert httpx.get(f"{intake}/no-such-page").status_code == 404
    for service in ("lead-intake", "handoff", "metrics"):
        assert httpx.get(f"http://127.0.0.1:{ports[service]}/healthz").status_code == 200
    asyncio.run(_produce_undecodable_record(f"127.0.0.1:{ports['broker']}"))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require_system_tool("prometheus", "runs the shipped queries against live services")
    tmp = tmp_path_factory.mktemp("live-prometheus")
    names = ("postgres", "broker", "lead-intake", "handoff", "metrics", "prometheus")
    ports = {name: free_port() for name in names}
    funnel = _start_funnel_dev(tmp, ports)
    server: subprocess.Popen[bytes] | None = None
    try:
        config = _prometheus_config(ports)
        config["rule_files"] = _fast_rule_files(tmp)
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            stdout=(tmp / "prometheus.out").open("ab"),
            stderr=subprocess.STDOUT,
        )
        live = Prometheus(f"http://127.0.0.1:{ports['prometheus']}")
        wait_until(lambda: _answers(live), timeout=30, what="Prometheus to answer")
        _send_traffic(ports)
        wait_until(
            lambda: (
                _has_data(live, 'up{job=~"lead-intake|handoff|metrics"} == 1', count=3)
                and _has_data(live, "max(funnel_leads_captured_total) >= 5")
                and _has_data(
                    live, 'funnel_events_consumed_total{outcome="dead_lettered"}', count=2
                )
                and _has_data(live, "rate(funnel_http_requests_total[1m]) > 0")
            ),
            timeout=60,
            what="Prometheus to have scraped the traffic",
        )
        yield live
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        funnel.send_signal(signal.SIGINT)
        funnel.wait(60)


def _answers(live: Prometheus) -> bool:
    try:
        return httpx.get(f"{live.url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _has_data(live: Prometheus, expr: str, count: int = 1) -> bool:
    return len(live.series(expr)) >= count


SHIPPED = dashboard_queries() + rule_queries()


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
    may_be_empty = set(NOT_EXPORTED_YET) | set(PRODUCTION_ONLY) | EMPTY_UNTIL_A_HANDOFF_IS_DECIDED
    if query.kind == "alert" or source_metrics(query.expr) & may_be_empty:
        return  # may be empty: an alert that does not fire, or a metric not here (yet)
    wait_until(
        lambda: _has_data(prometheus, query.expr),
        timeout=15,
        what=f"data for {query.origin}: {query.expr}",
    )


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
        lambda: _has_data(prometheus, 'ALERTS{alertname="FunnelDeadLetters"}', count=2),
        timeout=15,
        what="FunnelDeadLetters for the handoff and metrics groups",
    )

    groups = {
        series["metric"]["group"]
        for series in prometheus.series('ALERTS{alertname="FunnelDeadLetters"}')
    }
    assert groups == {"handoff", "metrics"}
    assert prometheus.series('ALERTS{alertname="FunnelServiceDown"}') == []


def test_metric_names_are_series_not_functions_labels_or_durations() -> None:
    expr = (
        'sum by (group) (x{a="b"} offset 10m) / on () group_left y > 1e3 '
        "and histogram_quantile(0.9, max by (le) (rate(z_bucket[5m])))"
    )

    assert metric_names(expr) == {"x", "y", "z_bucket"}
    assert source_metrics("funnel:handoff_sla_attainment_ratio:increase1d") == {
        "funnel_handoff_sla_breaches_total",
        "funnel_handoffs_total",
    }
