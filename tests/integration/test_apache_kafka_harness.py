"""The Apache Kafka harness: real KRaft brokers from the pinned jars.

Skipped where Java 17+ or Maven is missing, failed instead in CI
(``FUNNEL_REQUIRE_SYSTEM_TOOLS=1``), as ``require_system_tool`` does for other tools.
The session's node is tests/conftest.py's. A node SIGKILLed and started again on its
storage is tests/integration/test_outages.py's (the session node) and the dev-platform
e2e test's (`funnel dev --broker kafka`); a 3-node quorum losing one broker, then two,
recovering, and leaving no JVM behind is the fault suite's on Apache Kafka
(tests/faults/failover.py), the one place that pays for three JVMs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from funnel_tools.apache_kafka import ApacheKafkaCluster
from funnel_tools.kafka_jars import KafkaJarsMismatch, ensure_jars, verify_jars
from tests.helpers import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]


async def create_topic(bootstrap_servers: str, *, replication: int, partitions: int = 3) -> str:
    name = f"harness.{uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, replication)])
    finally:
        await admin.close()
    return name


def durable_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """The producer settings the platform uses on Apache Kafka."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )


async def read_all(
    bootstrap_servers: str, topic: str, *, expect: int, partitions: int = 3
) -> list[bytes]:
    """The values in ``topic`` once at least ``expect`` arrived, by a group-less reader."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, partition) for partition in range(partitions)])
        values: list[bytes] = []

        async def fetch() -> int:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(record.value for record in batch if record.value is not None)
            return len(values)

        await eventually(fetch, until=lambda count: count >= expect, timeout=30, what=topic)
        return values
    finally:
        await consumer.stop()


def test_installed_jars_are_reused_without_maven(
    kafka_lib_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH without mvn: any attempt to fetch again would raise KafkaToolsMissing.
    monkeypatch.setenv("PATH", "/nonexistent")

    assert ensure_jars(REPO_ROOT) == kafka_lib_dir


def test_a_changed_jar_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "kafka-clients-4.2.0.jar").write_bytes(b"not the pinned bytes")
    (tmp_path / "extra-1.0.jar").write_bytes(b"")
    pinned = {
        "kafka-clients-4.2.0.jar": hashlib.sha256(b"the pinned bytes").hexdigest(),
        "slf4j-api-1.7.36.jar": "0" * 64,
    }

    with pytest.raises(KafkaJarsMismatch) as refused:
        verify_jars(tmp_path, pinned)

    message = str(refused.value)
    assert "kafka-clients-4.2.0.jar: sha256" in message
    assert "slf4j-api-1.7.36.jar: missing" in message
    assert "extra-1.0.jar: not pinned" in message


async def test_single_node_round_trips_an_idempotent_acks_all_record(
    kafka_single_node: ApacheKafkaCluster,
) -> None:
    bootstrap = kafka_single_node.bootstrap_servers
    topic = await create_topic(bootstrap, replication=1)
    producer = durable_producer(bootstrap)
    await producer.start()

    try:
        sent = await producer.send_and_wait(topic, b"lead-captured", key=b"lead-1")
    finally:
        await producer.stop()

    assert sent.offset == 0
    assert await read_all(bootstrap, topic, expect=1) == [b"lead-captured"]
