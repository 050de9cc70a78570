"""`funnel dev`, the images and the manifests run uvicorn with the same options."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import yaml

from funnel_tools.dashboards import DEPLOY
from funnel_tools.dev import SERVER_OPTIONS

SERVICES = ("lead-intake", "handoff", "metrics")


def _contains(args: Sequence[str], options: Sequence[str]) -> bool:
    return any(
        list(args[start : start + len(options)]) == list(options)
        for start in range(len(args) - len(options) + 1)
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_runs_uvicorn_as_funnel_dev_does(service: str) -> None:
    dockerfile = (DEPLOY / "docker" / f"{service}.Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    args = json.loads(cmd.removeprefix("CMD "))

    assert args[0] == "uvicorn"
    assert _contains(args, SERVER_OPTIONS), args


@pytest.mark.parametrize("service", SERVICES)
def test_the_deployment_runs_uvicorn_as_funnel_dev_does(service: str) -> None:
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "base" / f"{service}.yaml").read_text())
    [deployment] = [d for d in documents if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]

    assert container["args"][0] == "uvicorn"
    assert _contains(container["args"], SERVER_OPTIONS), container["args"]
