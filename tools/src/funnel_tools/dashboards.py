"""The PromQL that ships in deploy/: every dashboard target and every rule expression.

Grafana variables are replaced with values Prometheus accepts, so each query can be
parsed by promtool and run against a live Prometheus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
DASHBOARD_FILES = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$period": "2026-Q4",
    "$service": ".*",
}
_VARIABLE = re.compile(r"\$\{?(__)?\w+\}?")


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for test ids and messages)."""

    origin: str
    expr: str
    kind: str  # "panel", "record" or "alert"

    def __str__(self) -> str:
        return self.origin


def load_dashboard(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def substitute(expr: str, values: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """The expression with Grafana's variables replaced; unknown ones are left as they are."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def variables_in(expr: str) -> set[str]:
    return {match.group(0) for match in _VARIABLE.finditer(expr)}


def dashboard_queries(values: dict[str, str] = GRAFANA_VARIABLES) -> list[Query]:
    queries = []
    for path in DASHBOARD_FILES:
        board = load_dashboard(path)
        for panel in panels(board):
            for target in panel.get("targets", []):
                origin = f"{path.stem}: {panel['title']} [{target['refId']}]"
                queries.append(Query(origin, substitute(target["expr"], values), "panel"))
    return queries


def rules() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def rule_queries() -> list[Query]:
    return [
        Query(f"alert {rule['alert']}", rule["expr"], "alert")
        if "alert" in rule
        else Query(f"record {rule['record']}", rule["expr"], "record")
        for rule in rules()
    ]


def as_rule_file(queries: list[Query]) -> str:
    """The queries as recording rules: `promtool check rules` then parses each one."""
    return yaml.safe_dump(
        {
            "groups": [
                {
                    "name": "parse-only",
                    "rules": [
                        {"record": f"parse_only:query_{number}", "expr": query.expr}
                        for number, query in enumerate(queries)
                    ],
                }
            ]
        }
    )
