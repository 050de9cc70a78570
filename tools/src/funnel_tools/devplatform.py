"""`funnel dev` as a subprocess on free ports, driven as a user (and an operator) would:
the tests, ``make bench`` and ``make boards-preview`` all start the platform this way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from funnel_common.settings import CommonSettings
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_until

SERVICES = ("intake", "handoff", "metrics")
WORKERS = tuple(f"{service}_worker" for service in SERVICES)


def parse_metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series == wanted:
            return float(value)
    return None


@dataclass
class DevPlatform:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    data_dir: Path
    output: Path
    broker: str = "tansu"
    """Which broker `funnel dev` runs: ``tansu``, ``kafka`` or ``external``
    (``funnel dev --broker``)."""
    external_bootstrap: str | None = None
    """An external broker's bootstrap servers."""

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    @property
    def database_url(self) -> str:
        """The superuser's: for looking at every schema (tests, the bench's checks)."""
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/funnel"

    def service_database_url(self, role: str) -> str:
        """What a service (and its operator commands) connects with: its own role
        (``intake``, ``handoff``, ``metrics``), owner of its schema alone."""
        return f"postgresql://{role}@127.0.0.1:{self.ports['postgres']}/funnel"

    @property
    def bootstrap_servers(self) -> str:
        return self.external_bootstrap or f"127.0.0.1:{self.ports['broker']}"

    def client_settings(self) -> CommonSettings:
        """Settings for a Kafka client of this platform's broker, as its services have
        them (the embedded broker's clients set what it lacks)."""
        overrides = EmbeddedBroker.CLIENT_SETTINGS if self.broker == "tansu" else {}
        return CommonSettings.model_validate(
            {**overrides, "kafka_bootstrap_servers": self.bootstrap_servers}
        )

    @property
    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.data_dir / "pgdata", self.ports["postgres"])

    def captured(self) -> float | None:
        text = httpx.get(self.url("metrics", "/metrics"), timeout=5).text
        return parse_metric(text, "funnel_leads_captured_total")

    def listener(self, name: str) -> int | None:
        """The pid listening on ``name``'s port, or None (e.g. between a kill and a restart)."""
        for conn in psutil.net_connections("tcp"):
            port = getattr(conn.laddr, "port", None)
            if conn.status == psutil.CONN_LISTEN and port == self.ports[name] and conn.pid:
                return conn.pid
        return None

    def pid_listening_on(self, name: str) -> int:
        pid = self.listener(name)
        assert pid is not None, f"nothing listens for {name}"
        return pid

    def ready(self, service: str) -> bool:
        """Serving, and reaching PostgreSQL (a process stays ready while it is away, and
        says so in the body)."""
        try:
            answer = httpx.get(self.url(service, "/readyz"), timeout=1)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json()["checks"].get("postgres") == "ok"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)


def free_ports() -> dict[str, int]:
    return {name: free_port() for name in ("postgres", "broker", *SERVICES, *WORKERS)}


def start_dev(
    data_dir: Path,
    ports: dict[str, int],
    output: Path,
    extra_env: dict[str, str] | None = None,
    *,
    cwd: Path | None = None,
    broker: str = "tansu",
    external_bootstrap: str | None = None,
) -> DevPlatform:
    """Start `funnel dev` (on ``broker``: ``tansu``, ``kafka``, or ``external`` at
    ``external_bootstrap``) and wait for its banner (all services ready, consumers
    assigned).

    With ``cwd``, it runs there as a person would in their checkout: its data dir is the
    default ``.funnel`` there (``data_dir`` must say so), no ``FUNNEL_DEV_DATA_DIR``.
    """
    if cwd is not None:
        assert data_dir == cwd / ".funnel", "in a checkout, the data dir is its .funnel"
    location = {} if cwd is not None else {"FUNNEL_DEV_DATA_DIR": str(data_dir)}
    inherited = {k: v for k, v in os.environ.items() if cwd is None or k != "FUNNEL_DEV_DATA_DIR"}
    env = {
        **inherited,
        **location,
        "FUNNEL_DEV_BROKER": broker,
        **({"FUNNEL_KAFKA_BOOTSTRAP_SERVERS": external_bootstrap} if external_bootstrap else {}),
        "FUNNEL_DEV_POSTGRES_PORT": str(ports["postgres"]),
        "FUNNEL_DEV_BROKER_PORT": str(ports["broker"]),
        "FUNNEL_DEV_INTAKE_PORT": str(ports["intake"]),
        "FUNNEL_DEV_HANDOFF_PORT": str(ports["handoff"]),
        "FUNNEL_DEV_METRICS_PORT": str(ports["metrics"]),
        "FUNNEL_DEV_INTAKE_WORKER_PORT": str(ports["intake_worker"]),
        "FUNNEL_DEV_HANDOFF_WORKER_PORT": str(ports["handoff_worker"]),
        "FUNNEL_DEV_METRICS_WORKER_PORT": str(ports["metrics_worker"]),
        # One test client posts at load-test rates; the per-client limit is for the web.
        "FUNNEL_INTAKE_RATE_LIMIT_PER_CLIENT": "1000000",
        **(extra_env or {}),
    }
    funnel = Path(sys.executable).with_name("funnel")
    process = subprocess.Popen(
        [str(funnel), "dev"], env=env, cwd=cwd, stdout=output.open("ab"), stderr=subprocess.STDOUT
    )
    wait_until(
        lambda: "Press Ctrl-C" in output.read_text() or process.poll() is not None,
        # A Kafka node's JVM takes 5-60 s to start on a loaded 2-core machine.
        timeout=90 if broker == "tansu" else 180,
        what="funnel dev to be ready",
    )
    assert process.poll() is None, output.read_text()
    return DevPlatform(process, ports, data_dir, output, broker, external_bootstrap)
