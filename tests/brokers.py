"""The brokers the suites run on: the embedded Tansu broker and Apache Kafka.

A test module (or test) marked ``both_brokers`` runs once on each (ids ``[tansu]`` and
``[kafka]``); every other test runs on Tansu alone. docs/testing.md says which suites
run on both and why the rest do not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil
import pytest

from funnel_tools.apache_kafka import ApacheKafkaCluster, ApacheKafkaNode
from funnel_tools.embedded import EmbeddedBroker
from funnel_tools.kafka_jars import KafkaToolsMissing, ensure_jars
from tests.helpers import eventually

BrokerKind = Literal["tansu", "kafka"]
BROKER_KINDS: tuple[BrokerKind, ...] = ("tansu", "kafka")
REPO_ROOT = Path(__file__).resolve().parents[1]

# A Kafka node's JVM start on a loaded 2-core machine: 5-20 s, up to a minute.
_KAFKA_START_SECONDS = 120.0


class Broker(Protocol):
    """What a test needs of the broker under it."""

    kind: BrokerKind

    @property
    def bootstrap_servers(self) -> str: ...

    def client_settings(self) -> dict[str, Any]:
        """CommonSettings fields for clients of this broker (beyond the defaults)."""
        ...

    def kill(self) -> None:
        """SIGKILL the broker (a crash)."""
        ...

    async def restart(self) -> None:
        """Start it again after :meth:`kill` (on its storage, where it keeps one) and
        return once it serves clients."""
        ...


@dataclass
class Tansu:
    server: EmbeddedBroker
    kind: BrokerKind = "tansu"

    @property
    def bootstrap_servers(self) -> str:
        return self.server.bootstrap_servers

    def client_settings(self) -> dict[str, Any]:
        return dict(EmbeddedBroker.CLIENT_SETTINGS)

    def kill(self) -> None:
        self.server.stop(kill=True)

    async def restart(self) -> None:
        self.server.start()


@dataclass
class Kafka:
    cluster: ApacheKafkaCluster
    kind: BrokerKind = "kafka"

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    def client_settings(self) -> dict[str, Any]:
        return {"kafka_replication_factor": len(self.cluster.nodes)}

    def kill(self) -> None:
        for node in self.cluster.nodes:
            node.kill()

    async def restart(self) -> None:
        for node in self.cluster.nodes:
            await start_node(node)


async def start_node(node: ApacheKafkaNode) -> None:
    """Start a stopped node and wait, without blocking the event loop, until it serves.

    Started here, on the event loop's (main) thread: the JVM dies with the thread that
    started it, so never from a worker thread (asyncio.to_thread)."""
    node.start(wait=False)
    await eventually(
        node.serves_clients,
        timeout=_KAFKA_START_SECONDS,
        interval=0.2,
        what=f"Kafka node {node.node_id} to serve clients",
    )


def kafka_lib_dir_or_skip() -> Path:
    """The pinned broker jars; skip where Java or Maven is missing, fail in CI."""
    try:
        return ensure_jars(REPO_ROOT)
    except KafkaToolsMissing as missing:
        if os.environ.get("FUNNEL_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(f"Apache Kafka is required in CI: {missing}")
        pytest.skip(str(missing))


def java_processes_under(directory: Path) -> list[int]:
    """Process ids of JVMs whose command line names ``directory``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(str(directory) in argument for argument in cmdline):
            found.append(process.info["pid"])
    return found
