"""The broker ``funnel dev`` runs: the embedded Tansu broker (the default, nothing but
Python needed), Apache Kafka (one KRaft node from the pinned jars: Java 17+ and, the
first time, Maven), or none: a Kafka cluster of your own (``external``, at
``FUNNEL_KAFKA_BOOTSTRAP_SERVERS``), which ``funnel dev`` neither starts nor restarts.

Tansu keeps records in memory and lacks a few Kafka features, so its clients get the
settings that say so (``EmbeddedBroker.CLIENT_SETTINGS``); Apache Kafka's get the
platform's defaults. Kafka's data lives in ``<data dir>/kafka`` and survives a restart
of ``funnel dev``, like PostgreSQL's.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Protocol

from funnel_tools.apache_kafka import ApacheKafkaCluster
from funnel_tools.embedded import EmbeddedBroker
from funnel_tools.kafka_jars import ensure_jars

REPO_ROOT = Path(__file__).resolve().parents[3]


class BrokerName(enum.StrEnum):
    tansu = "tansu"
    kafka = "kafka"
    external = "external"


class DevBroker(Protocol):
    """What the supervisor needs of a broker."""

    description: str

    @property
    def bootstrap_servers(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def exit_code(self) -> int | None:
        """The exit code of a broker process that died, None while all run."""
        ...

    def restart(self) -> None:
        """Start again what died, and return once it serves clients."""
        ...

    def client_environment(self) -> dict[str, str]:
        """``FUNNEL_*`` settings for the services talking to this broker."""
        ...


class TansuBroker:
    description = "Tansu (embedded, memory only)"

    def __init__(self, port: int, log_path: Path) -> None:
        self.server = EmbeddedBroker(port, log_path=log_path)

    @property
    def bootstrap_servers(self) -> str:
        return self.server.bootstrap_servers

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def exit_code(self) -> int | None:
        process = self.server.process
        return process.returncode if process is not None and process.poll() is not None else None

    def restart(self) -> None:
        self.server.stop()
        self.server.start()

    def client_environment(self) -> dict[str, str]:
        return EmbeddedBroker.client_environment()


class KafkaBroker:
    description = "Apache Kafka (one KRaft node)"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.cluster = ApacheKafkaCluster(
            data_dir, lib_dir=ensure_jars(REPO_ROOT), client_ports=[port]
        )
        (self.node,) = self.cluster.nodes
        if self.node.address.client_port != port:
            raise SystemExit(
                f"{data_dir} holds a Kafka node that listens on port "
                f"{self.node.address.client_port}, not {port}: set FUNNEL_DEV_BROKER_PORT to "
                "that port, or delete the directory to start with an empty broker"
            )

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def exit_code(self) -> int | None:
        process = self.node.process
        return process.returncode if process is not None and process.poll() is not None else None

    def restart(self) -> None:
        # On its storage: every record it acknowledged is still there. From the
        # supervisor's (main) thread, so that the JVM does not die with a worker thread.
        self.node.stop()
        self.node.start(wait=True)

    def client_environment(self) -> dict[str, str]:
        return {}


class ExternalBroker:
    """A Kafka cluster run by someone else: its clients get the platform's defaults."""

    description = "Kafka at FUNNEL_KAFKA_BOOTSTRAP_SERVERS (not supervised)"

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap_servers

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def exit_code(self) -> int | None:
        return None

    def restart(self) -> None:
        pass

    def client_environment(self) -> dict[str, str]:
        return {}


def dev_broker(
    name: BrokerName, *, data_dir: Path, port: int, logs: Path, external: str
) -> DevBroker:
    """The broker ``funnel dev`` was asked for, not started yet (``external``: the
    bootstrap servers of a cluster of one's own)."""
    if name is BrokerName.kafka:
        return KafkaBroker(data_dir / "kafka", port)
    if name is BrokerName.external:
        return ExternalBroker(external)
    return TansuBroker(port, logs / "broker.log")
