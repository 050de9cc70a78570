"""Dependencies going away: nothing accepted is lost, nothing is counted twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from funnel_common.kafka import ensure_topics
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from lead_intake.settings import IntakeSettings
from tests.helpers import eventually
from tests.integration.intake.conftest import running_intake
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
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    server.create_database("funnel")
    yield server
    server.stop()


async def test_leads_posted_while_the_broker_is_down_are_counted_once_it_returns(
    own_broker: EmbeddedBroker, database_url: str, settings: CommonSettings
) -> None:
    settings = settings.model_copy(update={"kafka_bootstrap_servers": own_broker.bootstrap_servers})
    await ensure_topics(settings)
    async with run_platform(database_url, settings) as platform:
        assert (await platform.intake.post("/v1/leads", json=LEAD)).status_code == 202
        await platform.wait_for_metric("funnel_leads_captured_total", 1)

        own_broker.stop(kill=True)
        during = [await platform.intake.post("/v1/leads", json=person(i)) for i in range(3)]
        web_readiness = await platform.intake.get("/readyz")
        worker_readiness = await platform.workers["intake"].get("/readyz")
        own_broker.start()

        assert [answer.status_code for answer in during] == [202, 202, 202]
        # The web process never talks to the broker; its worker waits for it.
        assert web_readiness.json()["status"] == "ready"
        assert worker_readiness.status_code == 200
        assert worker_readiness.json()["status"] == "degraded"
        await platform.wait_for_metric("funnel_leads_captured_total", 4, timeout=40)


async def test_writes_answer_503_with_retry_after_while_postgres_is_down(
    own_postgres: EmbeddedPostgres, topics: CommonSettings
) -> None:
    async with run_platform(own_postgres.dsn("funnel"), topics) as platform:
        assert (await platform.intake.post("/v1/leads", json=LEAD)).status_code == 202

        own_postgres.stop()
        refused = await platform.intake.post("/v1/leads", json=LEAD)
        readiness = await platform.intake.get("/readyz")
        own_postgres.start()
        accepted_again = await platform.intake.post("/v1/leads", json=LEAD)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json()["type"] == "/problems/unavailable"
    assert readiness.status_code == 503
    assert accepted_again.status_code == 202


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
