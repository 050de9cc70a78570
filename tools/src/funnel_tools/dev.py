"""``funnel dev``: the embedded platform, supervised, in the foreground.

Starts PostgreSQL (data kept under ``.funnel/``) with one role per service
(``pgroles``), the broker (the embedded Tansu broker, or with ``--broker kafka`` Apache
Kafka: ``funnel_tools.dev_broker``), creates the topics, runs each service as two processes
(``web`` and ``worker``), restarts a process that dies, and on Ctrl-C stops everything:
the services first, then the broker, then PostgreSQL.

Once every process is ready it writes ``<data dir>/platform.json`` (how the other
``funnel`` commands find this platform, ``funnel_cli.platform``) and
``<data dir>/prometheus.yml`` (a scrape config for these ports). Everything it says
goes to the terminal and, as JSON lines, to ``<data dir>/logs/supervisor.log``.
"""

from __future__ import annotations

import asyncio
import logging
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
from rich.text import Text

from funnel_cli.platform import STATE_FILE, PlatformState
from funnel_common.kafka import ensure_topics
from funnel_common.settings import CommonSettings
from funnel_tools import devlogs
from funnel_tools.dev_broker import BrokerName, DevBroker, dev_broker
from funnel_tools.embedded import (
    EmbeddedPostgres,
    die_with_parent,
    port_open,
    wait_until,
)
from funnel_tools.pgroles import SERVICE_ROLES, provisioning_sql, role_dsn
from funnel_tools.prometheus import write_dev_prometheus_config

console = Console(stderr=True)

DATABASE = "funnel"
_STOP_GRACE_SECONDS = 10
_MAX_RESTART_DELAY_SECONDS = 10.0
_HEALTHY_UPTIME_SECONDS = 30.0
_POSTGRES_CHECK_SECONDS = 2.0

# How uvicorn runs every service, here as in the images and manifests under deploy/ (a
# test keeps them the same): no access log (a JSON line per request), and uvloop with
# httptools, which halve the HTTP stack's CPU per request against asyncio and h11, through
# our subclass of its protocol that bounds a request head in size (431) and in time
# (funnel_common.server); and no proxy headers: uvicorn would otherwise take
# X-Forwarded-For from any client on 127.0.0.1 as its address. The services decide the
# client address themselves, trusting only FUNNEL_TRUSTED_PROXIES
# (funnel_common.service.build_web_app).
HTTP_PROTOCOL = "funnel_common.server:BoundedHttpToolsProtocol"
SERVER_OPTIONS = (
    "--no-access-log", "--loop", "uvloop", "--http", HTTP_PROTOCOL, "--no-proxy-headers",
)  # fmt: skip


class DevSettings(BaseSettings):
    """``funnel dev`` settings, env prefix ``FUNNEL_DEV_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_DEV_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".funnel"),
        description="where PostgreSQL data, the logs and `platform.json` (how the other "
        "`funnel` commands find this platform) are kept",
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

    def service_ports(self) -> dict[str, int]:
        """Each process's port, by the name it runs under (and logs to)."""
        return {
            "lead-intake": self.intake_port,
            "lead-intake-worker": self.intake_worker_port,
            "handoff": self.handoff_port,
            "handoff-worker": self.handoff_worker_port,
            "metrics": self.metrics_port,
            "metrics-worker": self.metrics_worker_port,
        }


# Each process: its uvicorn factory. The web one keeps the service's name.
FACTORIES = {
    "lead-intake": "lead_intake.web:create_app",
    "lead-intake-worker": "lead_intake.worker:create_app",
    "handoff": "handoff.web:create_app",
    "handoff-worker": "handoff.worker:create_app",
    "metrics": "metrics.web:create_app",
    "metrics-worker": "metrics.worker:create_app",
}
# The settings that give each service its database (its own role, `pgroles`).
DATABASE_SETTINGS = {
    "lead-intake": "FUNNEL_INTAKE_DATABASE_URL",
    "handoff": "FUNNEL_HANDOFF_DATABASE_URL",
    "metrics": "FUNNEL_METRICS_DATABASE_URL",
}


class Supervisor:
    """What `funnel dev` says: to the terminal, and as JSON to ``supervisor.log``."""

    def __init__(self, log_path: Path) -> None:
        self._log = devlogs.json_file_logger("funnel.dev", log_path, service="funnel-dev")

    def say(
        self, message: str, *, level: int = logging.INFO, terminal: bool = True, **facts: object
    ) -> None:
        if terminal:
            style = {logging.WARNING: "yellow", logging.ERROR: "red"}.get(level, "")
            console.print(Text(message, style=style))
        self._log.log(level, message, extra=facts)

    def close(self) -> None:
        devlogs.close(self._log)


class StartFailed(Exception):
    """`funnel dev` cannot start; the message says why and where to look."""


@dataclass
class ServiceProcess:
    """One supervised service process: how to start it, and its current process."""

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


def _ports_taken(settings: DevSettings, postgres: EmbeddedPostgres) -> list[str]:
    # An external broker is not ours to start: its port is expected to be taken.
    own_broker = {} if settings.broker is BrokerName.external else {"broker": settings.broker_port}
    ports = {**own_broker, **settings.service_ports()}
    taken = [f"{port} ({name})" for name, port in ports.items() if port_open(port, settings.host)]
    # Our own PostgreSQL may still run (a `funnel dev` killed with -9): it is reused.
    # Anything else on its port is another server, never to be written into.
    if port_open(settings.postgres_port) and not postgres.is_running():
        taken.append(f"{settings.postgres_port} (PostgreSQL)")
    return taken


def run(
    broker_name: Annotated[
        BrokerName | None,
        typer.Option(
            "--broker",
            help="tansu (embedded, the default), kafka (Apache Kafka; Java 17+ and Maven) or "
            "external (FUNNEL_KAFKA_BOOTSTRAP_SERVERS)",
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
    supervisor = Supervisor(logs / "supervisor.log")
    postgres = EmbeddedPostgres(data_dir / "pgdata", settings.postgres_port)
    taken = _ports_taken(settings, postgres)
    if taken:
        supervisor.say(
            f"Port(s) already in use: {', '.join(taken)}. Is another `funnel dev` running? "
            "Stop it, or choose other ports with the FUNNEL_DEV_*_PORT settings.",
            level=logging.ERROR,
        )
        supervisor.close()
        raise SystemExit(1)

    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    broker = dev_broker(
        settings.broker,
        data_dir=data_dir,
        port=settings.broker_port,
        logs=logs,
        external=settings.common.kafka_bootstrap_servers,
    )
    services: list[ServiceProcess] = []
    state_file = data_dir / STATE_FILE
    try:
        with console.status("Starting PostgreSQL…"):
            _start_postgres(postgres)
        with console.status(f"Starting {broker.description} and creating topics…"):
            broker.start()
            # The broker's client settings (the embedded one's gaps), for the services and
            # the other `funnel` commands, unless the environment already sets them.
            clients = {
                name: value
                for name, value in broker.client_environment().items()
                if name not in os.environ
            }
            common = CommonSettings.model_validate(
                {
                    **{name.removeprefix("FUNNEL_").lower(): v for name, v in clients.items()},
                    "kafka_bootstrap_servers": broker.bootstrap_servers,
                }
            )
            asyncio.run(ensure_topics(common))
        env = {
            **clients,
            **_service_env(postgres.dsn(DATABASE), broker.bootstrap_servers, settings),
        }
        services = _service_processes(settings, env, logs)
        for service in services:
            service.start(settings.host)
        with console.status("Waiting for the services to be ready…"):
            _wait_ready(settings.host, services, timeout=60)
        PlatformState(pid=os.getpid(), env=env, urls=_urls(settings)).write(data_dir)
        scrape_config = write_dev_prometheus_config(data_dir, settings.host, _ports(settings))
        _print_banner(settings, postgres, broker, services, logs, scrape_config)
        supervisor.say("ready", terminal=False, state_file=str(state_file))
        _supervise(settings.host, services, broker, postgres, supervisor)
    except Stop:
        supervisor.say("Stopping…")
    except StartFailed as error:
        supervisor.say(str(error), level=logging.ERROR)
        raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        state_file.unlink(missing_ok=True)
        for service in services:
            service.stop()
        broker.stop()
        postgres.stop()
        supervisor.say(f"Stopped. PostgreSQL data is kept in {data_dir / 'pgdata'}")
        supervisor.close()


def _start_postgres(postgres: EmbeddedPostgres) -> None:
    try:
        postgres.start()
        postgres.create_database(DATABASE)
        postgres.execute(provisioning_sql(DATABASE), database=DATABASE)
    except subprocess.CalledProcessError as error:
        reason = (error.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise StartFailed(
            f"PostgreSQL did not start: {reason[0]} (its log: {postgres.log_file})"
        ) from error


def _service_processes(
    settings: DevSettings, env: dict[str, str], logs: Path
) -> list[ServiceProcess]:
    return [
        ServiceProcess(name, FACTORIES[name], port, {**os.environ, **env}, logs / f"{name}.log")
        for name, port in settings.service_ports().items()
    ]


def _service_env(server_dsn: str, bootstrap: str, settings: DevSettings) -> dict[str, str]:
    """What the services (and the other `funnel` commands) need: each service's own
    database URL, the broker, the services' URLs."""
    urls = _urls(settings)
    env = {
        setting: role_dsn(server_dsn, SERVICE_ROLES[service])
        for service, setting in DATABASE_SETTINGS.items()
    }
    return {
        **env,
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        # Read by `funnel import`, `funnel seed` and `funnel privacy`.
        "FUNNEL_INTAKE_URL": urls["lead-intake"],
        "FUNNEL_HANDOFF_URL": urls["handoff"],
        "FUNNEL_SEED_HANDOFF_URL": urls["handoff"],
        "FUNNEL_SEED_METRICS_URL": urls["metrics"],
        # The inbox links in handoff's emails and Slack messages: this handoff, on
        # whatever port it serves (the setting's default is the default port's), unless
        # it is set (a tunnel's address, say).
        "FUNNEL_HANDOFF_PUBLIC_URL": os.environ.get("FUNNEL_HANDOFF_PUBLIC_URL", urls["handoff"]),
    }


def _urls(settings: DevSettings) -> dict[str, str]:
    return {
        name: f"http://{settings.host}:{port}" for name, port in settings.service_ports().items()
    }


def _ports(settings: DevSettings) -> dict[str, dict[str, int]]:
    ports = settings.service_ports()
    return {
        service: {"web": ports[service], "worker": ports[f"{service}-worker"]}
        for service in DATABASE_SETTINGS
    }


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
                raise StartFailed(
                    f"{service.name} exited during start-up; its log: {service.log_path}"
                )
        return all(_ready(host, service.port) for service in services)

    try:
        wait_until(all_ready, timeout=timeout, what="the services' /readyz", interval=0.2)
    except TimeoutError as error:
        raise StartFailed(f"{error}; the logs are in {services[0].log_path.parent}") from error


def _supervise(
    host: str,
    services: list[ServiceProcess],
    broker: DevBroker,
    postgres: EmbeddedPostgres,
    supervisor: Supervisor,
) -> None:
    """Restart whatever dies: a service (with a backoff that resets after a healthy run),
    the broker, or PostgreSQL."""
    next_postgres_check = 0.0
    while True:
        now = time.monotonic()
        exit_code = broker.exit_code()
        if exit_code is not None:
            supervisor.say(
                f"broker exited ({exit_code}); restarting",
                level=logging.WARNING,
                program="broker",
                returncode=exit_code,
            )
            broker.restart()
        if now >= next_postgres_check:
            next_postgres_check = now + _POSTGRES_CHECK_SECONDS
            if not postgres.is_running():
                supervisor.say(
                    "PostgreSQL is not running; starting it",
                    level=logging.WARNING,
                    program="postgres",
                )
                postgres.start()
        for service in services:
            process = service.process
            if process is not None and process.poll() is not None:
                uptime = now - service.started_at
                service.restarts = 0 if uptime > _HEALTHY_UPTIME_SECONDS else service.restarts + 1
                delay = min(0.5 * 2**service.restarts, _MAX_RESTART_DELAY_SECONDS)
                supervisor.say(
                    f"{service.name} exited ({process.returncode}); restarting in {delay:.1f}s",
                    level=logging.WARNING,
                    program=service.name,
                    returncode=process.returncode,
                    restart_in_seconds=delay,
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
    scrape_config: Path,
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
    table.add_row("prometheus", f"prometheus --config.file={scrape_config}")
    console.print(table)
    body = '{"email": "ada@example.com", "source": "webinar"}'
    console.print(
        f"Try: curl -s -X POST http://{settings.host}:{settings.intake_port}/v1/leads "
        f"-H 'content-type: application/json' -d '{body}'",
        markup=False,
    )
    console.print(
        "Other commands find this platform: .venv/bin/funnel --help, or "
        'make funnel ARGS="token create --role admin --subject alice"',
        markup=False,
    )
    console.print("Press Ctrl-C to stop.")
