"""deploy/prometheus/: the scrape configs load, the rules parse and their unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from funnel_tools.dashboards import PROMETHEUS_DIR, RULE_FILES, rules
from tests.conftest import require_system_tool

SERVICES = {"lead-intake": 8001, "handoff": 8002, "metrics": 8003}
WORKERS = {"lead-intake": 8011, "handoff": 8012, "metrics": 8013}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_system_tool("promtool", "checks and unit-tests the Prometheus rules")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", *map(str, RULE_FILES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(RULE_FILES) == 2


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(PROMETHEUS_DIR / "tests" / "rules_test.yml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing(promtool: str) -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests" / "rules_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }

    alerts = {rule["alert"] for rule in rules() if "alert" in rule}

    assert alerts - fired == set(), "alerts without a promtool test that fires them"


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]

    assert {rule["alert"] for rule in alerts} >= {
        "FunnelServiceDown",
        "FunnelHandoffSlaAttainmentLow",
        "FunnelPipelineCoverageBelowBand",
        "FunnelOutboxStale",
        "FunnelConsumerLagGrowing",
        "FunnelDeadLetters",
    }
    for rule in alerts:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["runbook"].splitlines()) >= 3, rule["alert"]


def test_rule_names_are_unique_and_recorded_names_follow_the_convention() -> None:
    names = [rule.get("record") or rule["alert"] for rule in rules()]

    assert len(names) == len(set(names))
    for rule in rules():
        if "record" in rule:
            assert rule["record"].count(":") == 2, rule["record"]


def test_funnel_figures_are_never_summed_across_replicas() -> None:
    # Each metrics replica exports the same global figures: sum() would multiply them.
    funnel_figures = (
        "funnel_leads_",
        "funnel_handoffs_total",
        "funnel_handoff_",
        "funnel_deals_",
        "funnel_pipeline_",
        "funnel_revenue_target",
        "funnel_won_value",
        "funnel_win_rate_ratio",
        "funnel_retention_ratio",
    )
    for rule in rules():
        expr = " ".join(rule["expr"].split())
        if any(figure in expr for figure in funnel_figures):
            assert "sum by" not in expr.replace("sum without (outcome)", ""), expr
            assert "sum(" not in expr, expr


def _local_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return config


def test_local_config_is_valid_and_scrapes_web_and_worker_of_each_service(
    promtool: str,
) -> None:
    result = run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))

    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {
        job["job_name"]: [(group["labels"], group["targets"]) for group in job["static_configs"]]
        for job in _local_config()["scrape_configs"]
    }
    # One job per service (rules join its processes by job), a component per process.
    assert jobs == {
        name: [
            ({"component": "web"}, [f"127.0.0.1:{port}"]),
            ({"component": "worker"}, [f"127.0.0.1:{WORKERS[name]}"]),
        ]
        for name, port in SERVICES.items()
    }


def test_kubernetes_config_is_valid_apart_from_discovery(promtool: str, tmp_path: Path) -> None:
    # Debian's prometheus is built without Kubernetes service discovery, so promtool
    # refuses kubernetes_sd_configs; everything else (relabelling, rules) is checked
    # with the discovery swapped for a static target.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    services, exporter = config["scrape_configs"]
    relabelled = {
        step["target_label"]: step["source_labels"]
        for step in services["relabel_configs"]
        if "target_label" in step
    }
    assert relabelled["job"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    assert relabelled["component"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    assert exporter["job_name"] == "kafka-exporter"
    for job in (services, exporter):
        assert job["kubernetes_sd_configs"] == [
            {"role": "pod", "namespaces": {"names": ["shared-funnel"]}}
        ]
        job["static_configs"] = [{"targets": ["pod.example:8001"]}]
        del job["kubernetes_sd_configs"]
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    checked = tmp_path / "prometheus-k8s.yml"
    checked.write_text(yaml.safe_dump(config))

    result = run(promtool, "check", "config", str(checked))

    assert result.returncode == 0, result.stdout + result.stderr
