"""`funnel dev`, the images, the manifests and compose run uvicorn with the same options,
for both processes of each service: the web process (``<module>.web:create_app``) and
the worker (``<module>.worker:create_app``), on the same ports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from funnel_tools.dashboards import DEPLOY
from funnel_tools.dev import SERVER_OPTIONS, DevSettings, _service_processes

# service -> (module, its funnel dev settings' prefix)
SERVICES = {
    "lead-intake": ("lead_intake", "intake"),
    "handoff": ("handoff", "handoff"),
    "metrics": ("metrics", "metrics"),
}
PROCESSES = [(service, process) for service in SERVICES for process in ("web", "worker")]
# Deployments and compose give a stopping process longer than `funnel dev` does (5 s):
# in-flight requests finish within the pod's terminationGracePeriodSeconds (30).
GRACEFUL_SHUTDOWN = ["--timeout-graceful-shutdown", "20"]


def _contains(args: Sequence[str], options: Sequence[str]) -> bool:
    return any(
        list(args[start : start + len(options)]) == list(options)
        for start in range(len(args) - len(options) + 1)
    )


def _default_port(service: str, process: str) -> int:
    """The port `funnel dev` gives this process by default."""
    prefix = SERVICES[service][1]
    field = f"{prefix}_port" if process == "web" else f"{prefix}_worker_port"
    port: int = DevSettings.model_fields[field].default
    return port


def _assert_runs(args: list[str], service: str, process: str) -> None:
    module = SERVICES[service][0]
    assert args[:3] == ["uvicorn", "--factory", f"{module}.{process}:create_app"], args
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == str(_default_port(service, process))
    assert _contains(args, SERVER_OPTIONS), args
    assert _contains(args, GRACEFUL_SHUTDOWN), args


def test_funnel_dev_runs_the_same_six_processes(tmp_path: Path) -> None:
    defaults = DevSettings.model_construct()
    started = _service_processes(defaults, {}, tmp_path)

    assert {(process.factory, process.port) for process in started} == {
        (f"{SERVICES[service][0]}.{process}:create_app", _default_port(service, process))
        for service, process in PROCESSES
    }


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_runs_the_web_process_as_funnel_dev_does(service: str) -> None:
    dockerfile = (DEPLOY / "docker" / f"{service}.Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    args = json.loads(cmd.removeprefix("CMD "))

    _assert_runs(args, service, "web")


def _deployment_container(service: str, process: str) -> dict[str, Any]:
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "base" / f"{service}.yaml").read_text())
    name = service if process == "web" else f"{service}-worker"
    [deployment] = [
        d for d in documents if d and d["kind"] == "Deployment" and d["metadata"]["name"] == name
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize(("service", "process"), PROCESSES)
def test_the_deployment_runs_uvicorn_as_funnel_dev_does(service: str, process: str) -> None:
    container = _deployment_container(service, process)

    _assert_runs(container["args"], service, process)
    assert container["ports"][0]["containerPort"] == _default_port(service, process)


@pytest.mark.parametrize("service", SERVICES)
def test_the_compose_worker_runs_uvicorn_as_funnel_dev_does(service: str) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())

    _assert_runs(compose["services"][f"{service}-worker"]["command"], service, "worker")
