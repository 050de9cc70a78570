"""Apache Kafka itself, no Docker: KRaft nodes run from the pinned jars.

``ApacheKafkaCluster`` formats KRaft storage and runs one JVM per node, each a combined
broker and controller: one node for the everyday tests, three (replication 3,
``min.insync.replicas=2``) for failover. Nodes can be killed and started again on the
same storage. The jars come from ``funnel_tools.kafka_jars.ensure_jars``.

Set-up and process control are synchronous, like the embedded servers; questions to the
running cluster (who leads what) are ``async``, since the tests asking them are.

``python -m funnel_tools.apache_kafka run [--nodes 3]`` keeps a cluster up by hand;
``prepare`` does the one-time set-up (jars, class archive) ahead of a test run, outside
any test's timeout; ``pin`` rewrites the checksum file after a version change in the pom.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from funnel_tools.embedded import die_with_parent, distinct_free_ports, port_open
from funnel_tools.kafka_jars import (
    KafkaToolsMissing,
    classpath,
    ensure_jars,
    find_java,
    java_version_banner,
    pin_jars,
)

# Start-up dominates a test run's cost (a JVM per node on two shared cores), so the
# nodes trade peak throughput for a fast start: the client compiler only, the serial
# collector (no GC threads to feed), a small heap.
FAST_START_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# Each node logs to a file in its own directory (nothing on the terminal). Log4j's own
# shutdown hook is off: it would close the file while the broker still logs its shutdown.
_LOG4J2_TEMPLATE = """\
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.filePattern = {log_dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""

T = TypeVar("T")


def _die_with_parent() -> None:
    # SIGKILL, not SIGTERM: with its parent gone nobody waits for a broker's controlled
    # shutdown, which can block for minutes when the rest of the quorum is gone too.
    die_with_parent(signal.SIGKILL)


def new_uuid() -> str:
    """A random Kafka ``Uuid`` (cluster and directory ids): URL-safe base64, no padding."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids these: CLI flags
            return text


def _run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    # A loop of its own in a thread, so synchronous callers work inside a running loop too.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def describe_cluster(
    bootstrap_servers: str, *, request_seconds: float = 5.0
) -> dict[str, Any]:
    """The Metadata answer (brokers, cluster id) from ``bootstrap_servers``."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(request_seconds * 1000)
    )
    try:
        await admin.start()
        cluster: dict[str, Any] = await admin.describe_cluster()
        return cluster
    finally:
        await admin.close()


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def class_archive(lib_dir: Path) -> Path:
    """Where the brokers' class-data sharing archive for this JDK and jar set lives."""
    installed = (lib_dir.parent / "installed.stamp").read_text()
    key = f"{find_java()}\n{java_version_banner()}\n{installed}"
    return lib_dir.parent / f"classes-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"


def ensure_class_archive(lib_dir: Path) -> Path:
    """The class-data sharing archive of a broker's classes, recorded on first use.

    A JVM spends most of its start-up loading and verifying Kafka's and Scala's classes;
    an AppCDS archive of them, dumped at the exit of one throwaway broker, saves about
    40% of every later format and start (the JDK checks that the archive matches its own
    build and the class path, and ignores it otherwise).
    """
    archive = class_archive(lib_dir)
    with open(lib_dir.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one recording per checkout, not one per session
        if archive.exists():
            return archive
        with tempfile.TemporaryDirectory(prefix="kafka-cds-") as scratch:
            dumped = Path(scratch) / "classes.jsa"
            cluster = ApacheKafkaCluster(
                Path(scratch) / "cluster", lib_dir=lib_dir, share_classes=False,
                jvm_options=[*FAST_START_JVM_OPTIONS, f"-XX:ArchiveClassesAtExit={dumped}"],
            )  # fmt: skip
            try:
                cluster.start(timeout=300)
            finally:
                cluster.stop(grace=60)
            for stale in archive.parent.glob("classes-*.jsa"):
                stale.unlink()
            shutil.move(dumped, archive)
    return archive


@dataclasses.dataclass(frozen=True)
class NodeAddress:
    """Where one node listens: clients on ``client_port``, the quorum on ``controller_port``."""

    node_id: int
    client_port: int
    controller_port: int
    directory_id: str  # its metadata log directory's id, fixed before formatting

    @property
    def voter(self) -> str:
        """This node as ``--initial-controllers`` names it."""
        return f"{self.node_id}@127.0.0.1:{self.controller_port}:{self.directory_id}"


class ApacheKafkaNode:
    """One KRaft node (broker and controller in one JVM) with its storage in ``data_dir``."""

    def __init__(
        self,
        address: NodeAddress,
        data_dir: Path,
        *,
        lib_dir: Path,
        cluster_id: str,
        quorum: Sequence[NodeAddress],
        config: dict[str, str],
        jvm_options: Sequence[str] = FAST_START_JVM_OPTIONS,
        share_classes: bool = True,
    ) -> None:
        self.address = address
        self.data_dir = data_dir.resolve()
        self.lib_dir = lib_dir
        self.cluster_id = cluster_id
        self.quorum = list(quorum)
        self.config = config
        self.jvm_options = list(jvm_options)
        self.share_classes = share_classes
        self.process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    @property
    def node_id(self) -> int:
        return self.address.node_id

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.address.client_port}"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _java(self, main_class: str, *args: str) -> list[str]:
        archive = class_archive(self.lib_dir)
        sharing = [f"-XX:SharedArchiveFile={archive}"] if self.share_classes else []
        return [
            find_java(), *self.jvm_options, *sharing,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", ":".join(map(str, classpath(self.lib_dir))), main_class, *args,
        ]  # fmt: skip

    def write_config(self) -> Path:
        """server.properties and the log configuration, in the node's directory."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, controller_port = self.address.client_port, self.address.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            # A dynamic quorum (KIP-853, Kafka 4's default): the voters are fixed once at
            # format time (--initial-controllers), not in this file.
            "controller.quorum.bootstrap.servers": ",".join(
                f"127.0.0.1:{voter.controller_port}" for voter in self.quorum
            ),
            "log.dirs": str(self.storage_dir),
            **self.config,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2_TEMPLATE.format(log_dir=self.data_dir)
        )
        return path

    def is_formatted(self) -> bool:
        return (self.storage_dir / "meta.properties").exists()

    def format_command(self) -> list[str]:
        """``kafka-storage format`` for this node (StorageTool is still in the core jar)."""
        return self._java(
            "kafka.tools.StorageTool", "format",
            "--config", str(self.data_dir / "server.properties"),
            "--cluster-id", self.cluster_id,
            "--initial-controllers", ",".join(voter.voter for voter in self.quorum),
        )  # fmt: skip

    def start(self, *, wait: bool = True, timeout: float = 120) -> None:
        """Start the JVM on the node's storage (formatting it first if new); with ``wait``,
        return once the node answers a metadata request naming itself.

        The JVM dies with the thread that starts it (PR_SET_PDEATHSIG), so call this
        from a thread that lives as long as the node should.
        """
        if self.is_running():
            return
        self.write_config()
        if not self.is_formatted():
            _format_storage([self], timeout=timeout)
        self._console = open(self.data_dir / "console.log", "ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            preexec_fn=_die_with_parent,
        )
        if wait:
            self.wait_ready(timeout=timeout)

    async def serves_clients(self) -> bool:
        """True when this node's client listener answers Metadata and lists itself: a
        KRaft broker opens that listener only once the controller has unfenced it."""
        if not self.is_running() or not port_open(self.address.client_port, timeout=0.5):
            return False  # not listening yet: spares a client that logs every refusal
        try:
            cluster = await describe_cluster(self.bootstrap_servers)
        except (TimeoutError, KafkaError, OSError):
            return False
        return any(broker["node_id"] == self.node_id for broker in cluster["brokers"])

    def wait_ready(self, *, timeout: float = 120) -> None:
        """Wait until the node serves clients; raise with its log's tail if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise RuntimeError(
                    f"Kafka node {self.node_id} exited during start-up; its logs end:\n"
                    f"{_tail(self.data_dir / 'console.log')}\n{_tail(self.log_file)}"
                )
            if _run_async(self.serves_clients()):
                return
            time.sleep(0.2)  # polling a JVM's readiness: there is no event to wait on
        raise TimeoutError(f"Kafka node {self.node_id} was not ready after {timeout:.0f}s")

    def stop(self, *, grace: float = 20) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL if it takes longer than ``grace``."""
        self._signal(signal.SIGTERM, grace=grace)

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash; its storage stays for ``start()``."""
        self._signal(signal.SIGKILL, grace=10)

    def _signal(self, signum: signal.Signals, *, grace: float) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._console is not None:
            self._console.close()
            self._console = None

    def quorum_view(self) -> tuple[int, int] | None:
        """``(leader epoch, leader id)`` as this node last persisted it, if it knows one."""
        path = self.storage_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        leader = int(state.get("leaderId", -1))
        return (int(state.get("leaderEpoch", -1)), leader) if leader >= 0 else None


def _format_storage(nodes: Sequence[ApacheKafkaNode], *, timeout: float) -> None:
    # One StorageTool JVM per node, all at once: each costs seconds of start-up.
    runs = [
        (node, subprocess.Popen(node.format_command(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent))
        for node in nodes
        if not node.is_formatted()
    ]  # fmt: skip
    for node, run in runs:
        output, _ = run.communicate(timeout=timeout)
        if run.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka node {node.node_id} failed:\n{output.decode(errors='replace')}"
            )


def broker_config(size: int, **overrides: str) -> dict[str, str]:
    """Broker settings for a cluster of ``size`` nodes, as the platform expects them."""
    replication = str(size)
    # Two acknowledgements out of three survive one broker down; one node can only ask one.
    min_insync = "1" if size < 3 else "2"
    return {
        "default.replication.factor": replication,
        "min.insync.replicas": min_insync,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_insync,
        # Kafka's 50 partitions for each internal topic take seconds to create on first use.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_insync,
        "num.partitions": "3",
        # The platform creates its topics with the admin client; a typo must not create one.
        "auto.create.topics.enable": "false",
        # `funnel replay` rebuilds projections from the topics, so records are kept until a
        # topic is deleted (Kafka's default would drop them after 7 days).
        "log.retention.ms": "-1",
        "group.initial.rebalance.delay.ms": "0",
        # A crashed broker is fenced (its partitions led elsewhere, its restart accepted:
        # until then the controller refuses it as a duplicate registration) once its
        # session expires: 5 s here instead of Kafka's 9 s, to keep failover tests short.
        "broker.session.timeout.ms": "5000",
        "broker.heartbeat.interval.ms": "1000",
        **overrides,
    }


class ApacheKafkaCluster:
    """``size`` KRaft nodes on 127.0.0.1, each broker and controller, storage in ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        lib_dir: Path,
        size: int = 1,
        config: dict[str, str] | None = None,
        jvm_options: Sequence[str] = FAST_START_JVM_OPTIONS,
        client_ports: Sequence[int] | None = None,
        share_classes: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.root = root.resolve()
        self.cluster_id, addresses = self._layout(size, client_ports)
        settings = {**broker_config(size), **(config or {})}
        self.nodes = [
            ApacheKafkaNode(
                address, self.root / f"node-{address.node_id}", lib_dir=lib_dir,
                cluster_id=self.cluster_id, quorum=addresses, config=settings,
                jvm_options=jvm_options, share_classes=share_classes,
            )
            for address in addresses
        ]  # fmt: skip

    @property
    def layout_file(self) -> Path:
        return self.root / "cluster.json"

    def _layout(
        self, size: int, client_ports: Sequence[int] | None
    ) -> tuple[str, list[NodeAddress]]:
        # The quorum's voters (ids, controller ports, directory ids) are written into the
        # storage at format time, so a cluster restarted on kept storage must reuse them.
        if self.layout_file.exists():
            layout = json.loads(self.layout_file.read_text())
            addresses = [NodeAddress(**node) for node in layout["nodes"]]
            if len(addresses) != size:
                raise ValueError(f"{self.root} holds a {len(addresses)}-node cluster, not {size}")
            return layout["cluster_id"], addresses
        if client_ports is not None and len(client_ports) != size:
            raise ValueError(f"{size} nodes need {size} client ports")
        free = distinct_free_ports(2 * size)
        clients = list(client_ports) if client_ports is not None else free[size:]
        return new_uuid(), [
            NodeAddress(i + 1, clients[i], free[i], new_uuid()) for i in range(size)
        ]

    def _write_layout(self) -> None:
        if not self.layout_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            nodes = [dataclasses.asdict(node.address) for node in self.nodes]
            self.layout_file.write_text(
                json.dumps({"cluster_id": self.cluster_id, "nodes": nodes}, indent=2) + "\n"
            )

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> ApacheKafkaNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def start(self, *, timeout: float = 180) -> None:
        """Format what is new, start every node, and wait until each serves clients."""
        if self.nodes[0].share_classes:
            ensure_class_archive(self.nodes[0].lib_dir)
        self._write_layout()
        for node in self.nodes:
            node.write_config()
        _format_storage(self.nodes, timeout=timeout)
        # All at once: a node's broker waits for a quorum of controllers anyway.
        for node in self.nodes:
            node.start(wait=False)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_ready(timeout=max(1.0, deadline - time.monotonic()))

    def stop(self, *, grace: float = 20) -> None:
        """Stop every node: SIGTERM to all at once (so the quorum lasts through the
        controlled shutdowns), SIGKILL to any still running after ``grace``."""
        running = [node for node in self.nodes if node.is_running()]
        for node in running:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
        for node in running:
            node.stop(grace=grace)

    def __enter__(self) -> ApacheKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def active_controller(self) -> ApacheKafkaNode | None:
        """The quorum leader, as the running nodes persisted it (newest epoch wins), or
        None while there is none (no election finished since its leader died)."""
        views = [
            (view, node)
            for node in self.nodes
            if node.is_running() and (view := node.quorum_view())
        ]
        if not views:
            return None
        (_, leader_id), _ = max(views, key=lambda pair: pair[0])
        leader = self.node(leader_id)
        return leader if leader.is_running() else None

    async def partition_leaders(self, topics: list[str] | None = None) -> Counter[int]:
        """How many partitions each node leads, over ``topics`` (default: all, internal
        ones included), asked of any running node."""
        bootstrap = ",".join(node.bootstrap_servers for node in self.nodes if node.is_running())
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        return Counter(
            partition["leader"]
            for topic in described
            for partition in topic["partitions"]
            if partition["leader"] >= 0
        )

    async def busiest_leader(self, topics: list[str] | None = None) -> ApacheKafkaNode:
        """The node leading the most partitions (lowest id on a tie)."""
        counts = await self.partition_leaders(topics)
        leader_id = min(counts, key=lambda node_id: (-counts[node_id], node_id))
        return self.node(leader_id)


@contextlib.contextmanager
def running_cluster(
    root: Path, *, repo_root: Path, size: int = 1, config: dict[str, str] | None = None
) -> Iterator[ApacheKafkaCluster]:
    """A started cluster for a ``with`` block, stopped on the way out."""
    cluster = ApacheKafkaCluster(root, lib_dir=ensure_jars(repo_root), size=size, config=config)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funnel_tools.apache_kafka")
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a cluster until Ctrl-C")
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--data", type=Path, help="storage directory (default: a temporary one)")
    commands.add_parser("pin", help="rewrite tools/kafka/jars.sha256 from the pom's jars")
    commands.add_parser(
        "prepare", help="fetch the jars and record the class archive (one-time set-up)"
    )
    args = parser.parse_args(argv)
    if args.command == "pin":
        print(f"wrote {pin_jars(args.repo)}")  # noqa: T201
        return 0
    if args.command == "prepare":
        try:
            archive = ensure_class_archive(ensure_jars(args.repo))
        except KafkaToolsMissing as missing:
            # A laptop without Java skips the Apache Kafka tests; CI must run them.
            required = os.environ.get("FUNNEL_REQUIRE_SYSTEM_TOOLS") == "1"
            print(  # noqa: T201
                f"Apache Kafka {'is required' if required else 'skipped'}: {missing}",
                file=sys.stderr,
            )
            return 1 if required else 0
        print(f"Apache Kafka ready: {archive}")  # noqa: T201
        return 0
    with contextlib.ExitStack() as stack:
        data = args.data or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        started = time.monotonic()
        cluster = stack.enter_context(running_cluster(data, repo_root=args.repo, size=args.nodes))
        print(  # noqa: T201
            f"Apache Kafka: {args.nodes} node(s) ready in {time.monotonic() - started:.1f}s "
            f"at {cluster.bootstrap_servers} (storage in {data}); Ctrl-C stops",
            flush=True,
        )
        # Both stop it, even where a shell started it with SIGINT ignored.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
