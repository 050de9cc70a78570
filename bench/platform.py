"""The platform under test: `funnel dev` as a subprocess on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from funnel_common.embedded import free_port, wait_until


@dataclass
class RunningPlatform:
    ports: dict[str, int]
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    output: Path = field(init=False)

    def __post_init__(self) -> None:
        self.output = self.data_dir / "dev.out"

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/funnel"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.ports['broker']}"

    def pid_of(self, service: str) -> int:
        for conn in psutil.net_connections("tcp"):
            port = getattr(conn.laddr, "port", None)
            if conn.status == psutil.CONN_LISTEN and port == self.ports[service] and conn.pid:
                return conn.pid
        raise RuntimeError(f"nothing listens for {service}")

    def __enter__(self) -> RunningPlatform:
        env = {
            **os.environ,
            "FUNNEL_DEV_DATA_DIR": str(self.data_dir / "funnel"),
            "FUNNEL_DEV_POSTGRES_PORT": str(self.ports["postgres"]),
            "FUNNEL_DEV_BROKER_PORT": str(self.ports["broker"]),
            "FUNNEL_DEV_INTAKE_PORT": str(self.ports["intake"]),
            "FUNNEL_DEV_HANDOFF_PORT": str(self.ports["handoff"]),
            "FUNNEL_DEV_METRICS_PORT": str(self.ports["metrics"]),
            "FUNNEL_LOG_LEVEL": "WARNING",
            # The load generator is one client; the per-client limit is for the web.
            "FUNNEL_INTAKE_RATE_LIMIT_PER_CLIENT": "1000000",
        }
        funnel = Path(sys.executable).with_name("funnel")
        process = subprocess.Popen(
            [str(funnel), "dev"], env=env, stdout=self.output.open("ab"), stderr=subprocess.STDOUT
        )
        self.process = process
        wait_until(
            lambda: "Press Ctrl-C" in self.output.read_text() or process.poll() is not None,
            timeout=120,
            what="funnel dev",
        )
        if process.poll() is not None:
            raise RuntimeError(self.output.read_text())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)


def start_platform() -> RunningPlatform:
    data_dir = Path(tempfile.mkdtemp(prefix="funnel-bench-"))
    ports = {name: free_port() for name in ("postgres", "broker", "intake", "handoff", "metrics")}
    return RunningPlatform(ports=ports, data_dir=data_dir)
