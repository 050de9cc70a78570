"""Dependencies going away: nothing accepted is lost, nothing is counted twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from funnel_common.events import DLQ_TOPIC, LEADS_TOPIC
from funnel_common.kafka import ensure_topics, new_producer
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from lead_intake.settings import IntakeSettings
from tests.brokers import Broker, BrokerKind, Kafka, Tansu
from tests.helpers import eventually
from tests.integration.intake.conftest import running_intake
from tests.integration.kafka_helpers import read_topic
from tests.platform import run_platform

LEAD = {"email": "grace@example.com", "source": "webinar"}


def person(n: int) -> dict[str, str]:
    """A different person: the same email again is a merge (issue 3), not a capture."""
    return {**LEAD, "email": f"grace.{n}@example.com"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker_to_kill(broker_kind: BrokerKind, request: pytest.FixtureRequest) -> Broker:
    """A broker this test may kill: its own Tansu, or the session's Kafka node (killed
    and started again on its storage, as a crashed broker would be)."""
    if broker_kind == "kafka":
        return Kafka(request.getfixturevalue("kafka_single_node"))
    return Tansu(request.getfixturevalue("own_broker"))


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    server.create_database("funnel")
    yield server
    server.stop()


@pytest.mark.both_brokers
async def test_leads_posted_while_the_broker_is_down_are_counted_once_it_returns(
    broker_to_kill: Broker, database_url: str, settings: CommonSettings
) -> None:
    settings = settings.model_copy(
        update={"kafka_bootstrap_servers": broker_to_kill.bootstrap_servers}
    )
    await ensure_topics(settings)
    async with run_platform(database_url, settings) as platform:
        assert (await platform.intake.post("/v1/leads", json=LEAD)).status_code == 202
        await platform.wait_for_metric("funnel_leads_captured_total", 1)

        broker_to_kill.kill()
        during = [await platform.intake.post("/v1/leads", json=person(i)) for i in range(3)]
        web_readiness = await platform.intake.get("/readyz")
        worker_readiness = await platform.workers["intake"].get("/readyz")
        await broker_to_kill.restart()

        assert [answer.status_code for answer in during] == [202, 202, 202]
        # The web process never talks to the broker; its worker waits for it.
        assert web_readiness.json()["status"] == "ready"
        assert worker_readiness.status_code == 200
        assert worker_readiness.json()["status"] == "degraded"
        await platform.wait_for_metric("funnel_leads_captured_total", 4, timeout=60)


async def test_writes_answer_503_with_retry_after_and_pods_stay_ready_while_postgres_is_down(
    own_postgres: EmbeddedPostgres, topics: CommonSettings
) -> None:
    async with run_platform(own_postgres.dsn("funnel"), topics) as platform:
        assert (await platform.intake.post("/v1/leads", json=LEAD)).status_code == 202

        own_postgres.stop()
        refused = await platform.intake.post("/v1/leads", json=LEAD)
        readiness = {
            "web": await platform.intake.get("/readyz"),
            "worker": await platform.workers["handoff"].get("/readyz"),
        }
        own_postgres.start()
        accepted_again = await platform.intake.post("/v1/leads", json=LEAD)
        ready_again = await platform.intake.get("/readyz")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/unavailable"
    # Still ready: Kubernetes keeps the pod in the Service, so the client hears the 503
    # and its Retry-After from us, not a bare error from the ingress (docs/operations.md).
    for process, answer in readiness.items():
        assert answer.status_code == 200, process
        assert answer.json()["status"] == "degraded", process
        assert answer.json()["checks"]["postgres"] == "down", process
    assert accepted_again.status_code == 202
    assert ready_again.json() == {"status": "ready", "checks": {"postgres": "ok"}}


# Only the embedded broker loses records: Apache Kafka keeps what it acknowledged.
async def test_events_a_crashed_broker_lost_are_published_again(
    own_broker: EmbeddedBroker, database_url: str, settings: CommonSettings
) -> None:
    settings = settings.model_copy(update={"kafka_bootstrap_servers": own_broker.bootstrap_servers})
    await ensure_topics(settings)
    intake_only = IntakeSettings(database_url=database_url, common=settings)
    async with running_intake(intake_only) as client:
        for i in range(3):
            assert (await client.post("/v1/leads", json=person(i))).status_code == 202
        await eventually(
            lambda: _unsent(database_url), until=lambda n: n == 0, what="all three published"
        )

        # Published, never consumed, and gone with the broker's memory.
        own_broker.stop(kill=True)
        own_broker.start()
        await ensure_topics(settings)  # someone else recreates the topics first

        async with run_platform(database_url, settings) as platform:
            await platform.wait_for_metric("funnel_leads_captured_total", 3, timeout=30)
            assert (await client.post("/v1/leads", json=person(3))).status_code == 202
            await platform.wait_for_metric("funnel_leads_captured_total", 4, timeout=30)


async def _unsent(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM intake.outbox WHERE sent_at IS NULL"
        )
        return count
    finally:
        await connection.close()


async def test_dead_letters_outlive_a_restart_of_the_embedded_broker(
    own_broker: EmbeddedBroker, database_url: str, settings: CommonSettings
) -> None:
    """Two consumers (handoff's, metrics') park the same poison; both outboxes publish
    their dead letter to funnel.dlq, and again to the broker that came back empty:
    counting the records of a topic both write could not tell whose were lost."""
    settings = settings.model_copy(update={"kafka_bootstrap_servers": own_broker.bootstrap_servers})
    await ensure_topics(settings)
    async with run_platform(database_url, settings):
        await _produce(settings, LEADS_TOPIC, b"poison")
        before = await _dead_letter_groups(settings)

        own_broker.stop(kill=True)
        own_broker.start()
        await ensure_topics(settings)
        after = await _dead_letter_groups(settings)

    assert before == after == ["handoff", "metrics"]
    kept = await _outbox_rows(database_url, "funnel.dlq")
    assert kept == {"handoff": 1, "metrics": 1}


async def _produce(settings: CommonSettings, topic: str, value: bytes) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), value, key=b"poison")
    finally:
        await producer.stop()


async def _dead_letter_groups(settings: CommonSettings) -> list[str]:
    """The groups whose dead letter is on funnel.dlq, once both are there."""

    async def groups() -> list[str]:
        records = await read_topic(settings, DLQ_TOPIC, expect=2, timeout=2)
        return sorted(
            json.loads(r.value)["data"]["group"].removeprefix(settings.kafka_topic_prefix)
            for r in records
        )

    found: list[str] = await eventually(
        groups, until=lambda names: len(names) >= 2, timeout=40, what="two dead letters"
    )
    return found


async def _outbox_rows(database_url: str, topic: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        return {
            schema: await connection.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE topic = $1", topic
            )
            for schema in ("handoff", "metrics")
        }
    finally:
        await connection.close()
