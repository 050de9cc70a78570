"""`funnel dev` as a user runs it: supervised processes, restarts, clean stop, kept data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from funnel_common.embedded import free_port, port_open, wait_until
from tests.helpers import parse_metric

pytestmark = pytest.mark.e2e

LEAD = {"email": "katherine@example.com", "source": "webinar"}
_lead_numbers = iter(range(1_000_000))


def new_lead() -> dict[str, str]:
    """A different person each time: the same email again is a merge, not a capture."""
    return {**LEAD, "email": f"katherine.{next(_lead_numbers)}@example.com"}


def post_new_lead(platform: DevPlatform) -> bool:
    return httpx.post(platform.url("intake", "/v1/leads"), json=new_lead()).status_code == 202


@dataclass
class DevPlatform:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    output: Path

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def captured(self) -> float | None:
        text = httpx.get(self.url("metrics", "/metrics"), timeout=5).text
        return parse_metric(text, "funnel_leads_captured_total")

    def pid_listening_on(self, service: str) -> int:
        for conn in psutil.net_connections("tcp"):
            port = getattr(conn.laddr, "port", None)
            if conn.status == psutil.CONN_LISTEN and port == self.ports[service]:
                assert conn.pid is not None
                return conn.pid
        raise AssertionError(f"nothing listens for {service}")

    def ready(self, service: str) -> bool:
        try:
            return httpx.get(self.url(service, "/readyz"), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _start(data_dir: Path, ports: dict[str, int], output: Path) -> DevPlatform:
    env = {
        **os.environ,
        "FUNNEL_DEV_DATA_DIR": str(data_dir),
        "FUNNEL_DEV_POSTGRES_PORT": str(ports["postgres"]),
        "FUNNEL_DEV_BROKER_PORT": str(ports["broker"]),
        "FUNNEL_DEV_INTAKE_PORT": str(ports["intake"]),
        "FUNNEL_DEV_HANDOFF_PORT": str(ports["handoff"]),
        "FUNNEL_DEV_METRICS_PORT": str(ports["metrics"]),
    }
    funnel = Path(sys.executable).with_name("funnel")
    process = subprocess.Popen(
        [str(funnel), "dev"], env=env, stdout=output.open("ab"), stderr=subprocess.STDOUT
    )
    platform = DevPlatform(process, ports, output)
    wait_until(
        lambda: "Press Ctrl-C" in output.read_text() or process.poll() is not None,
        timeout=90,
        what="funnel dev to be ready",
    )
    assert process.poll() is None, output.read_text()
    return platform


def _stop(platform: DevPlatform) -> None:
    platform.process.send_signal(signal.SIGINT)
    platform.process.wait(60)


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("postgres", "broker", "intake", "handoff", "metrics")}


@pytest.fixture
def dev(tmp_path: Path, ports: dict[str, int]) -> Iterator[DevPlatform]:
    platform = _start(tmp_path / "funnel", ports, tmp_path / "dev.out")
    yield platform
    if platform.process.poll() is None:
        _stop(platform)


def test_killed_services_are_restarted_and_no_lead_is_lost_or_counted_twice(
    dev: DevPlatform, tmp_path: Path, ports: dict[str, int]
) -> None:
    accepted = 0
    for service in ("intake", "metrics", "handoff"):
        for _ in range(3):
            accepted += post_new_lead(dev)
        victim = dev.pid_listening_on(service)

        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda s=service, v=victim: dev.ready(s) and dev.pid_listening_on(s) != v,
            timeout=60,
            what=f"{service} to be restarted",
        )
        for _ in range(3):
            accepted += post_new_lead(dev)

    wait_until(lambda: dev.captured() == accepted, timeout=30, what=f"{accepted} leads counted")
    assert accepted == 18
    assert "restarting" in dev.output.read_text()

    _stop(dev)

    assert dev.process.returncode == 0
    assert not any(port_open(port) for port in ports.values())
    children = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert children == [], "orphan processes survived the stop"

    again = _start(tmp_path / "funnel", ports, tmp_path / "dev-again.out")
    try:
        assert again.captured() == accepted
        accepted += post_new_lead(again)
        wait_until(lambda: again.captured() == accepted, timeout=30, what="the next lead counted")
    finally:
        _stop(again)
