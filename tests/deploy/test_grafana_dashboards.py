"""deploy/grafana/: provisioning files and dashboards are consistent, every query parses.

Grafana itself cannot run here; these checks cover what it would refuse or silently
show as "No data": duplicate panel ids, a datasource uid nobody provisions, undefined
variables, PromQL that does not parse.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from funnel_tools.dashboards import (
    DASHBOARD_FILES,
    DEPLOY,
    as_rule_file,
    dashboard_queries,
    load_dashboard,
    panels,
    variables_in,
)
from tests.conftest import require_system_tool

GRAFANA = DEPLOY / "grafana"
BUILT_IN_VARIABLES = {"$__rate_interval", "$__range", "$__interval"}
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "table", "gauge"}


def _provisioned_datasources() -> list[dict[str, Any]]:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    datasources: list[dict[str, Any]] = provisioning["datasources"]
    return datasources


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda path: path.stem)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    path: Path = request.param
    return load_dashboard(path)


def test_both_boards_are_there_with_stable_uids() -> None:
    boards = {board["title"]: board["uid"] for board in map(load_dashboard, DASHBOARD_FILES)}

    assert boards == {
        "Revenue funnel": "shared-funnel-revenue",
        "Platform": "shared-funnel-platform",
    }


def test_panel_ids_are_unique_and_panels_fit_the_grid(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(board)]

    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels(board):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert 0 < grid["w"] <= 24 - grid["x"], panel["title"]
        assert panel["title"].strip()


def test_every_panel_and_target_uses_the_provisioned_datasource(board: dict[str, Any]) -> None:
    (datasource,) = _provisioned_datasources()
    expected = {"type": datasource["type"], "uid": datasource["uid"]}

    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]


def test_queries_use_only_defined_variables(board: dict[str, Any]) -> None:
    defined = {f"${variable['name']}" for variable in board["templating"]["list"]}

    for panel in panels(board):
        for target in panel.get("targets", []):
            unknown = variables_in(target["expr"]) - defined - BUILT_IN_VARIABLES
            assert unknown == set(), f"{panel['title']}: {unknown}"


def test_revenue_board_has_the_period_variable_and_the_leadership_panels() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "revenue-funnel.json")
    titles = {panel["title"] for panel in panels(board)}
    (period,) = board["templating"]["list"]

    assert period["name"] == "period"
    assert "period" in period["definition"]
    assert {
        "Coverage against the healthy band",
        "Won vs target",
        "Win rate",
        "Retention",
        "Stage conversion by source",
        "Leads still needed",
        "Rejection reasons",
        "SLA attainment (last 24h)",
    } <= titles
    period_scoped = [
        target["expr"]
        for panel in panels(board)
        for target in panel.get("targets", [])
        if any(name in target["expr"] for name in ("funnel_won_value", "coverage_ratio{"))
    ]
    assert len(period_scoped) >= 3
    assert all('period="$period"' in expr for expr in period_scoped)


def test_revenue_board_never_sums_global_funnel_figures() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "revenue-funnel.json")

    for panel in panels(board):
        for target in panel.get("targets", []):
            if "funnel_event_lag_seconds" not in target["expr"]:
                assert "sum" not in target["expr"], panel["title"]


def test_platform_board_covers_what_sre_asked_for() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "platform.json")
    exprs = " ".join(
        target["expr"] for panel in panels(board) for target in panel.get("targets", [])
    )

    for metric in (
        "funnel_http_requests_total",
        "funnel_http_request_duration_seconds_bucket",
        "funnel_consumer_lag_messages",
        "funnel_outbox_backlog",
        "funnel_outbox_oldest_age_seconds",
        'outcome="dead_lettered"',
        "funnel_event_lag_seconds_bucket",
        "funnel_db_pool_connections",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert metric in exprs, metric


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    promtool = require_system_tool("promtool", "parses the dashboards' PromQL")
    queries = dashboard_queries()
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(as_rule_file(queries))

    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout
    assert len(queries) > 30
