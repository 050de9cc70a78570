"""Faults under a steady stream of leads (`make test-faults`; also part of `make test`).

The platform runs as `funnel dev` (real processes). While a client posts leads without
pause, the broker is SIGKILLed, PostgreSQL gets a fast shutdown (SIGINT), each service
is SIGKILLed, every event on the topics is delivered a second time, and a poison record
lands on each topic. Afterwards every 2xx lead is stored exactly once, the counter
equals the stored leads, no request ever got a 500, every 503 carried Retry-After, and
the poison sits in the DLQ.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_common.embedded import wait_until
from funnel_common.events import ACCOUNTS_TOPIC, DEALS_TOPIC, DLQ_TOPIC, HANDOFFS_TOPIC, LEADS_TOPIC
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from tests.devplatform import DevPlatform, free_ports, start_dev

pytestmark = pytest.mark.faults

POISON_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC)


class LeadStream:
    """A client posting leads back to back in a thread, keeping score of every answer."""

    def __init__(self, platform: DevPlatform) -> None:
        self._url = platform.url("intake", "/v1/leads")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.accepted: list[UUID] = []
        self.statuses: Counter[int] = Counter()
        self.unavailable_without_retry_after = 0
        self.connection_errors = 0

    def __enter__(self) -> LeadStream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                lead = {"email": f"fault-{uuid4().hex[:12]}@example.com", "source": "faults"}
                try:
                    answer = client.post(self._url, json=lead)
                except httpx.HTTPError:
                    self.connection_errors += 1  # the service is down: nothing was accepted
                    self._stop.wait(0.05)
                    continue
                self.statuses[answer.status_code] += 1
                if answer.status_code == 202:
                    self.accepted.append(UUID(answer.json()["lead_id"]))
                elif answer.status_code == 503 and "retry-after" not in answer.headers:
                    self.unavailable_without_retry_after += 1
                self._stop.wait(0.02)

    def wait_for_more(self, count: int, timeout: float = 60) -> None:
        target = len(self.accepted) + count
        wait_until(
            lambda: len(self.accepted) >= target, timeout=timeout, what=f"{count} more leads"
        )


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevPlatform]:
    platform = start_dev(tmp_path / "funnel", free_ports(), tmp_path / "dev.out")
    yield platform
    platform.stop()


async def _stored_leads(platform: DevPlatform) -> set[UUID]:
    connection = await asyncpg.connect(platform.database_url)
    try:
        return {
            row["lead_id"] for row in await connection.fetch("SELECT lead_id FROM intake.leads")
        }
    finally:
        await connection.close()


async def _records(settings: CommonSettings, topic: str) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        # Everything up to the ends seen first: the stream keeps adding records after that.
        records: list[tuple[bytes | None, bytes]] = []
        ends: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            records += [(r.key, r.value or b"") for batch in batches.values() for r in batch]
            for partition in partitions:
                high_water = consumer.highwater(partition)
                if partition not in ends and high_water is not None:
                    ends[partition] = high_water
            positions = {p: await consumer.position(p) for p in partitions}
            if len(ends) == len(partitions) and all(positions[p] >= ends[p] for p in partitions):
                break
        return records
    finally:
        await consumer.stop()


async def _deliver_everything_again_and_poison(settings: CommonSettings) -> list[bytes]:
    producer = new_producer(settings)
    await producer.start()
    poisons = []
    try:
        for topic in POISON_TOPICS:
            for key, value in await _records(settings, topic):
                await producer.send(topic, value=value, key=key)
            poison = f"poison for {topic} {uuid4()}".encode()
            await producer.send_and_wait(topic, value=poison, key=b"poison")
            poisons.append(poison)
    finally:
        await producer.stop()
    return poisons


def _kill(platform: DevPlatform, name: str, how: signal.Signals = signal.SIGKILL) -> None:
    victim = platform.pid_listening_on(name)
    os.kill(victim, how)
    wait_until(
        lambda: (
            platform.listener(name) not in (None, victim)
            and (name not in ("intake", "handoff", "metrics") or platform.ready(name))
        ),
        timeout=60,
        what=f"{name} to be restarted",
    )


def test_every_accepted_lead_is_stored_and_counted_exactly_once_through_faults(
    dev: DevPlatform,
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=dev.bootstrap_servers)
    with LeadStream(dev) as stream:
        stream.wait_for_more(20)

        _kill(dev, "broker")
        stream.wait_for_more(20)

        # SIGINT is PostgreSQL's fast shutdown; the supervisor starts it again.
        _kill(dev, "postgres", signal.SIGINT)
        wait_until(lambda: dev.ready("intake"), timeout=60, what="PostgreSQL to be back")
        stream.wait_for_more(20)

        for service in ("intake", "handoff", "metrics"):
            _kill(dev, service)
            stream.wait_for_more(10)

        poisons = asyncio.run(_deliver_everything_again_and_poison(settings))
        stream.wait_for_more(20)

    stored = asyncio.run(_stored_leads(dev))
    # A request cut off mid-flight by a kill may have been stored without its answer
    # arriving: that is the only way a lead is stored without a 2xx.
    assert set(stream.accepted) <= stored
    assert len(stored - set(stream.accepted)) <= stream.connection_errors
    assert len(stream.accepted) == len(set(stream.accepted))
    wait_until(lambda: dev.captured() == len(stored), timeout=90, what="every stored lead counted")
    assert stream.statuses[500] == 0
    assert stream.unavailable_without_retry_after == 0
    parked = [json.loads(value) for _, value in asyncio.run(_records(settings, DLQ_TOPIC))]
    parked_originals = {p["original"].get("text", "").encode() for p in parked}
    assert set(poisons) <= parked_originals
    # The consumers kept going: the leads posted after the poison were counted above.
