"""A real Prometheus next to a `funnel dev` on free ports, and `funnel seed` against it.

Shared by the live-Prometheus test and the board previews (`python -m boards`): both
scrape every second with deploy/prometheus/prometheus.yml, its targets pointed at the
platform's ports, and the shipped rules evaluated every second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from funnel_tools.dashboards import PROMETHEUS_DIR
from funnel_tools.devplatform import DevPlatform
from funnel_tools.embedded import wait_until

# The targets of deploy/prometheus/prometheus.yml, by scrape job and `component` label,
# and the DevPlatform port each one reads.
JOB_PORTS = {
    "lead-intake": {"web": "intake", "worker": "intake_worker"},
    "handoff": {"web": "handoff", "worker": "handoff_worker"},
    "metrics": {"web": "metrics", "worker": "metrics_worker"},
}

Targets = dict[str, dict[str, int]]
"""Ports by scrape job, then by component (``web`` or ``worker``)."""


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        form = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        answer = httpx.post(f"{self.url}/api/v1/query", data=form, timeout=10)
        body: dict[str, Any] = answer.json()
        return body

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        form = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        answer = httpx.post(f"{self.url}/api/v1/query_range", data=form, timeout=30)
        body: dict[str, Any] = answer.json()
        return body

    def series(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def has_data(self, expr: str, count: int = 1) -> bool:
        return len(self.series(expr)) >= count

    def names(self) -> set[str]:
        body = httpx.get(f"{self.url}/api/v1/label/__name__/values", timeout=10).json()
        return set(body["data"])

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _pointed_at(targets: Targets, host: str = "127.0.0.1") -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its targets on the given ports."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        ports = targets[job["job_name"]]
        for group in job["static_configs"]:
            group["targets"] = [f"{host}:{ports[group['labels']['component']]}"]
    return config


def prometheus_config(targets: Targets) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the given ports and a one-second rhythm."""
    config = _pointed_at(targets)
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = []
    return config


def write_dev_prometheus_config(data_dir: Path, host: str, targets: Targets) -> Path:
    """``<data dir>/prometheus.yml``: deploy/prometheus/prometheus.yml for the ports this
    `funnel dev` chose (the ``FUNNEL_DEV_*_PORT`` settings), with the shipped rules."""
    config = _pointed_at(targets, host)
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    path = data_dir / "prometheus.yml"
    path.write_text(
        "# Written by `funnel dev` for the ports it runs on (deploy/prometheus/prometheus.yml\n"
        "# with its targets moved):\n"
        f"#   prometheus --config.file={path} --storage.tsdb.path={data_dir / 'prometheus'}\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return path


def fast_rule_files(directory: Path) -> list[str]:
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


def start_prometheus(
    binary: str, directory: Path, targets: Targets, port: int
) -> tuple[subprocess.Popen[bytes], Prometheus]:
    """Prometheus scraping ``targets`` (job, component -> port) with the shipped rules, ready."""
    config = prometheus_config(targets)
    config["rule_files"] = fast_rule_files(directory)
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(directory / "prometheus.out").open("ab"),
        stderr=subprocess.STDOUT,
    )
    live = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_until(live.ready, timeout=30, what="Prometheus to answer")
    except TimeoutError:
        server.terminate()
        raise
    return server, live


def platform_targets(platform: DevPlatform) -> Targets:
    return {
        job: {component: platform.ports[name] for component, name in components.items()}
        for job, components in JOB_PORTS.items()
    }


def run_seed(platform: DevPlatform, *args: str, timeout: float = 180) -> str:
    """Run `funnel seed` against ``platform``; its output (progress, summary) when it succeeds."""
    env = {
        **os.environ,
        "FUNNEL_HANDOFF_DATABASE_URL": platform.service_database_url("handoff"),
        "FUNNEL_INTAKE_URL": platform.url("intake", ""),
        "FUNNEL_SEED_HANDOFF_URL": platform.url("handoff", ""),
        "FUNNEL_SEED_METRICS_URL": platform.url("metrics", ""),
    }
    funnel = str(Path(sys.executable).with_name("funnel"))
    done = subprocess.run(
        [funnel, "seed", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
