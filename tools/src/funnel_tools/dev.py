"""``funnel dev``: the embedded platform, supervised, in the foreground.

Starts PostgreSQL (data kept under ``.funnel/``), the broker (the embedded Tansu broker,
or with ``--broker kafka`` Apache Kafka: ``funnel_tools.dev_broker``), creates the
topics, runs
each service as two processes (``web`` and ``worker``), restarts a process that dies,
and on Ctrl-C stops everything: the services first, then the broker, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated

import httpx
import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from funnel_common.kafka import ensure_topics
from funnel_common.settings import CommonSettings
from funnel_tools.dev_broker import BrokerName, DevBroker, dev_broker
from funnel_tools.embedded import (
    EmbeddedPostgres,
    die_with_parent,
    port_open,
    wait_until,
)

console = Console(stderr=True)

DATABASE = "funnel"
_STOP_GRACE_SECONDS = 10
_MAX_RESTART_DELAY_SECONDS = 10.0
_HEALTHY_UPTIME_SECONDS = 30.0
_POSTGRES_CHECK_SECONDS = 2.0

# How uvicorn runs every service, here as in the images and manifests under deploy/ (a
# test keeps them the same): no access log (a JSON line per request), and uvloop with
# httptools, which halve the HTTP stack's CPU per request against asyncio and h11.
SERVER_OPTIONS = ("--no-access-log", "--loop", "uvloop", "--http", "httptools")


class DevSettings(BaseSettings):
    """``funnel dev`` settings, env prefix ``FUNNEL_DEV_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_DEV_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".funnel"), description="where PostgreSQL data and the logs are kept"
    )
    host: str = Field(default="127.0.0.1", description="the address every process listens on")
    postgres_port: int = Field(default=15432, description="embedded PostgreSQL")
    broker: BrokerName = Field(
        default=BrokerName.tansu,
        description="`tansu` (embedded, memory only, nothing but Python needed) or `kafka` "
        "(Apache Kafka, one KRaft node, data kept in `<data_dir>/kafka`; needs Java 17+, and "
        "Maven the first time) or `external` (your own Kafka at `FUNNEL_KAFKA_BOOTSTRAP_SERVERS`, "
        "neither started nor restarted); `funnel dev --broker` sets it too",
    )
    broker_port: int = Field(default=9092, description="the broker")
    intake_port: int = Field(default=8001, description="lead-intake's web process")
    handoff_port: int = Field(default=8002, description="handoff's web process")
    metrics_port: int = Field(default=8003, description="metrics' web process")
    intake_worker_port: int = Field(
        default=8011, description="lead-intake's worker (`/healthz`, `/readyz`, `/metrics`)"
    )
    handoff_worker_port: int = Field(
        default=8012, description="handoff's worker (`/healthz`, `/readyz`, `/metrics`)"
    )
    metrics_worker_port: int = Field(
        default=8013, description="metrics' worker (`/healthz`, `/readyz`, `/metrics`)"
    )
    common: CommonSettings = Field(default_factory=CommonSettings)


@dataclass
class ServiceProcess:
    """One supervised service: how to start it, and its current process."""

    name: str
    factory: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, host: str) -> None:
        self._log = self._log or open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", self.factory,
             "--host", host, "--port", str(self.port), *SERVER_OPTIONS,
             "--timeout-graceful-shutdown", "5"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C reaches the supervisor only, which stops children in
            # order; and a child dies with the supervisor even if that is SIGKILLed.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        self.started_at = time.monotonic()
        self.restart_at = None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Stop(Exception):
    """Raised by the signal handler to unwind the supervisor loop."""


def _raise_stop(*_: object) -> None:
    # A second Ctrl-C (or a forwarded signal) must not interrupt the orderly stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop


def run(
    broker_name: Annotated[
        BrokerName | None,
        typer.Option(
            "--broker",
            help="tansu (embedded, the default) or kafka (Apache Kafka; Java 17+ and Maven)",
        ),
    ] = None,
) -> None:
    """Start the platform and supervise it until Ctrl-C."""
    settings = DevSettings()
    if broker_name is not None:
        settings = settings.model_copy(update={"broker": broker_name})
    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # An external broker is not ours to start: its port is expected to be taken.
    own_broker = () if settings.broker is BrokerName.external else (settings.broker_port,)
    taken = [
        port
        for port in (
            *own_broker,
            settings.intake_port,
            settings.handoff_port,
            settings.metrics_port,
            settings.intake_worker_port,
            settings.handoff_worker_port,
            settings.metrics_worker_port,
        )
        if port_open(port, settings.host)
    ]
    if taken:
        console.print(
            f"[red]Port(s) {taken} already in use[/red]: is another `funnel dev` running?"
        )
        raise SystemExit(1)

    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    postgres = EmbeddedPostgres(data_dir / "pgdata", settings.postgres_port)
    broker = dev_broker(
        settings.broker,
        data_dir=data_dir,
        port=settings.broker_port,
        logs=logs,
        external=settings.common.kafka_bootstrap_servers,
    )
    services: list[ServiceProcess] = []
    try:
        with console.status("Starting PostgreSQL…"):
            postgres.start()
            postgres.create_database(DATABASE)
        with console.status(f"Starting {broker.description} and creating topics…"):
            broker.start()
            # The broker's client settings, unless the environment already sets them.
            for name, value in broker.client_environment().items():
                os.environ.setdefault(name, value)
            common = CommonSettings(kafka_bootstrap_servers=broker.bootstrap_servers)
            asyncio.run(ensure_topics(common))
        services = _service_processes(
            settings, postgres.dsn(DATABASE), broker.bootstrap_servers, logs
        )
        for service in services:
            service.start(settings.host)
        with console.status("Waiting for the services to be ready…"):
            _wait_ready(settings.host, services, timeout=60)
        _print_banner(settings, postgres, broker, services, logs)
        _supervise(settings.host, services, broker, postgres)
    except Stop:
        console.print("\nStopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for service in services:
            service.stop()
        broker.stop()
        postgres.stop()
        console.print("Stopped. PostgreSQL data is kept in " + str(data_dir / "pgdata"))


def _service_processes(
    settings: DevSettings, dsn: str, bootstrap: str, logs: Path
) -> list[ServiceProcess]:
    # os.environ holds the broker's client settings too (run() sets them).
    env = {
        **os.environ,
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FUNNEL_INTAKE_DATABASE_URL": dsn,
        "FUNNEL_HANDOFF_DATABASE_URL": dsn,
        "FUNNEL_METRICS_DATABASE_URL": dsn,
    }
    specs = [
        ("lead-intake", "lead_intake.web:create_app", settings.intake_port),
        ("lead-intake-worker", "lead_intake.worker:create_app", settings.intake_worker_port),
        ("handoff", "handoff.web:create_app", settings.handoff_port),
        ("handoff-worker", "handoff.worker:create_app", settings.handoff_worker_port),
        ("metrics", "metrics.web:create_app", settings.metrics_port),
        ("metrics-worker", "metrics.worker:create_app", settings.metrics_worker_port),
    ]
    return [
        ServiceProcess(
            name=name, factory=factory, port=port, env=env, log_path=logs / f"{name}.log"
        )
        for name, factory, port in specs
    ]


def _ready(host: str, port: int) -> bool:
    """Ready, and (for a consumer) holding its partitions, so a first lead counts at once."""
    try:
        answer = httpx.get(f"http://{host}:{port}/readyz", timeout=1)
    except httpx.HTTPError:
        return False
    checks = answer.json().get("checks", {}) if answer.status_code == 200 else {}
    return answer.status_code == 200 and checks.get("consumer", "assigned") == "assigned"


def _wait_ready(host: str, services: list[ServiceProcess], timeout: float) -> None:
    def all_ready() -> bool:
        for service in services:
            if service.process is not None and service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited during start-up; see {service.log_path}")
        return all(_ready(host, service.port) for service in services)

    wait_until(all_ready, timeout=timeout, what="the services' /readyz", interval=0.2)


def _supervise(
    host: str, services: list[ServiceProcess], broker: DevBroker, postgres: EmbeddedPostgres
) -> None:
    """Restart whatever dies: a service (with a backoff that resets after a healthy run),
    the broker, or PostgreSQL."""
    next_postgres_check = 0.0
    while True:
        now = time.monotonic()
        exit_code = broker.exit_code()
        if exit_code is not None:
            console.print(f"[yellow]broker exited ({exit_code}); restarting[/yellow]")
            broker.restart()
        if now >= next_postgres_check:
            next_postgres_check = now + _POSTGRES_CHECK_SECONDS
            if not postgres.is_running():
                console.print("[yellow]PostgreSQL is not running; starting it[/yellow]")
                postgres.start()
        for service in services:
            process = service.process
            if process is not None and process.poll() is not None:
                uptime = now - service.started_at
                service.restarts = 0 if uptime > _HEALTHY_UPTIME_SECONDS else service.restarts + 1
                delay = min(0.5 * 2**service.restarts, _MAX_RESTART_DELAY_SECONDS)
                console.print(
                    f"[yellow]{service.name} exited ({process.returncode}); "
                    f"restarting in {delay:.1f}s[/yellow]"
                )
                service.process = None
                service.restart_at = now + delay
            if (
                service.process is None
                and service.restart_at is not None
                and now >= service.restart_at
            ):
                service.start(host)
        time.sleep(0.2)


def _print_banner(
    settings: DevSettings,
    postgres: EmbeddedPostgres,
    broker: DevBroker,
    services: list[ServiceProcess],
    logs: Path,
) -> None:
    table = Table(title="Shared Funnel is running", show_lines=False)
    table.add_column("what")
    table.add_column("where")
    for service in services:
        base = f"http://{settings.host}:{service.port}"
        if service.name.endswith("-worker"):
            table.add_row(service.name, f"{base}  (health {base}/healthz, metrics {base}/metrics)")
        else:
            table.add_row(service.name, f"{base}  (docs {base}/docs, metrics {base}/metrics)")
    table.add_row("broker", f"{broker.bootstrap_servers}  ({broker.description})")
    table.add_row("postgresql", postgres.dsn(DATABASE))
    table.add_row("logs", str(logs))
    console.print(table)
    body = '{"email": "ada@example.com", "source": "webinar"}'
    console.print(
        f"Try: curl -s -X POST http://{settings.host}:{settings.intake_port}/v1/leads "
        f"-H 'content-type: application/json' -d '{body}'",
        markup=False,
    )
    console.print("Press Ctrl-C to stop.")
