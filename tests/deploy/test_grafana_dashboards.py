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


DATASOURCE_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}


def _datasource_of(board: dict[str, Any]) -> dict[str, str]:
    """What every query of the board must name: the board's own Prometheus datasource
    variable, so an imported board works whatever uid that Grafana gave its Prometheus
    (a fixed uid shows "No data" everywhere but in our provisioning)."""
    (datasource,) = _provisioned_datasources()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    chooser = variables.get("datasource")
    assert chooser is not None, f"{board['title']} has no datasource variable"
    assert (chooser["type"], chooser["query"]) == ("datasource", datasource["type"])
    return DATASOURCE_VARIABLE


def test_every_panel_and_target_uses_the_boards_datasource_variable(board: dict[str, Any]) -> None:
    expected = _datasource_of(board)

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
        if variable["type"] != "datasource":
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
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    # Every exported quarter has an end, with or without a target.
    assert "funnel_period_end_timestamp_seconds" in variables["period"]["definition"]
    assert "funnel_reporting_currency_info" in variables["currency"]["definition"]
    assert {
        "Coverage against the healthy band",
        "Won vs target ($currency)",
        "Win rate",
        "Retention",
        "Stage conversion by source",
        "Leads still needed",
        "Rejection reasons",
        "SLA attainment",
        "SLA breaches by policy",
        "Escalations",
        "Deals closed in the period",
        "Deals reopened",
    } <= titles
    period_scoped = [
        target["expr"]
        for panel in panels(board)
        for target in panel.get("targets", [])
        if any(
            name in target["expr"]
            for name in ("funnel_won_value", "coverage_ratio{", "sla_attainment", "deals_closed")
        )
    ]
    assert len(period_scoped) >= 5
    assert all('period="$period"' in expr for expr in period_scoped)


def test_revenue_board_has_a_campaigns_row_split_by_the_bounded_source_label() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "revenue-funnel.json")
    everything = panels(board)
    [row] = [panel for panel in everything if panel["type"] == "row"
             and panel["title"].startswith("Campaigns")]  # fmt: skip
    # The panels below the row, up to the next row (or the end).
    below = [panel for panel in everything if panel["gridPos"]["y"] > row["gridPos"]["y"]]
    group = []
    for panel in sorted(below, key=lambda panel: (panel["gridPos"]["y"], panel["gridPos"]["x"])):
        if panel["type"] == "row":
            break
        group.append(panel)
    exprs = [target["expr"] for panel in group for target in panel["targets"]]

    assert {panel["title"] for panel in group} >= {
        "Cohort funnel by source",
        "Won value by source ($currency)",
        "Win rate by source",
        "SLA attainment by source",
        "Rejected by source",
    }
    # Campaign names are free text: never a label; the board splits by source and
    # reads the quarter the /v1/campaigns rows are about.
    assert all("by (source)" in expr and 'period="$period"' in expr for expr in exprs)
    assert not any("campaign" in expr for expr in exprs)


def test_revenue_board_shows_money_in_the_reporting_currency() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "revenue-funnel.json")

    # Grafana does not interpolate variables in a unit: no fixed currency unit, and
    # the currency the metrics service reports in is in the title instead.
    units = {panel["fieldConfig"]["defaults"].get("unit", "") for panel in panels(board)
             if panel["type"] != "row"}  # fmt: skip
    assert not any(unit.startswith("currency") for unit in units)
    money = [panel for panel in panels(board)
             if any("_value" in target["expr"] for target in panel.get("targets", []))]  # fmt: skip
    assert money
    assert all("$currency" in panel["title"] for panel in money if "/ 100" in str(panel["targets"]))


def test_revenue_board_never_sums_global_funnel_figures() -> None:
    board = load_dashboard(GRAFANA / "dashboards" / "revenue-funnel.json")

    for panel in panels(board):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "funnel_event_lag_seconds" in expr:
                continue
            # Summing across label values of one replica's answer (max by) is fine;
            # summing the replicas themselves would multiply the figure.
            assert expr.count("sum") == expr.count("sum(max by"), panel["title"]


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
