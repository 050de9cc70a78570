"""Write deploy/k8s/base/prometheus-rules.yaml from deploy/prometheus/rules/*.yml.

The Prometheus Operator reads rules from PrometheusRule objects, and kustomize cannot
load files outside its directory, so the object is generated and checked in; a test
fails when it drifts. Regenerate with: .venv/bin/python -m tests.deploy.rules_to_k8s
"""

from __future__ import annotations

from typing import Any

import yaml

from funnel_tools.dashboards import DEPLOY, RULE_FILES

TARGET = DEPLOY / "k8s" / "base" / "prometheus-rules.yaml"
HEADER = """\
# GENERATED from deploy/prometheus/rules/*.yml by `python -m tests.deploy.rules_to_k8s`;
# edit those files, not this one (tests/deploy checks that the two agree).
"""


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "shared-funnel"},
        "spec": {"groups": rule_groups()},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (runbooks, long expressions) as readable literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    return HEADER + yaml.dump(prometheus_rule(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    TARGET.write_text(render())
