"""Faults under a steady stream of leads, webhooks and rep decisions (`make test-faults`;
also part of `make test`).

The platform runs as `funnel dev` (real processes), with `funnel seed`'s roster: one of
its SLA policies (seed-hot) breaches within seconds. While three clients keep going
(leads, some of them demo requests nobody answers; reps accepting and rejecting their
handoffs; signed CRM and billing webhooks for the accepted leads' deals and accounts),
the broker is SIGKILLed, PostgreSQL gets a fast shutdown (SIGINT), each service is
SIGKILLed, every event on the topics is delivered a second time, and a poison record
lands on each topic. Afterwards the checks of tests/faults/checks.py hold (everything
accepted applied exactly once, every figure the oracle's, no 500), writes during the
PostgreSQL outage were answered 503, and the poison sits in the DLQ while the consumers
kept going (what came after it counted).

It runs on the embedded broker and on Apache Kafka (`funnel dev --broker kafka`); the
3-broker failover is tests/faults/test_failover.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from funnel_common.events import ACCOUNTS_TOPIC, DEALS_TOPIC, DLQ_TOPIC, HANDOFFS_TOPIC, LEADS_TOPIC
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import wait_until
from tests.brokers import BrokerKind, kafka_lib_dir_or_skip
from tests.faults.checks import assert_applied_exactly_once, set_up, wait_until_settled
from tests.faults.readback import records

# Each broker kind starts its own `funnel dev`; a Kafka node starts in 5-60 s.
pytestmark = [pytest.mark.faults, pytest.mark.both_brokers, pytest.mark.timeout(600)]

POISON_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC)


@pytest.fixture
def dev(tmp_path: Path, broker_kind: BrokerKind) -> Iterator[DevPlatform]:
    if broker_kind == "kafka":
        kafka_lib_dir_or_skip()  # `funnel dev --broker kafka` needs Java (and Maven, once)
    platform = start_dev(
        tmp_path / "funnel", free_ports(), tmp_path / "dev.out", broker=broker_kind
    )
    yield platform
    platform.stop()


async def _deliver_everything_again_and_poison(settings: CommonSettings) -> list[bytes]:
    producer = new_producer(settings)
    await producer.start()
    poisons = []
    try:
        for topic in POISON_TOPICS:
            for key, value in await records(settings, topic):
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
    # A Kafka node's JVM takes 5-60 s to start again on a loaded 2-core machine.
    slow = name == "broker" and platform.broker == "kafka"
    wait_until(
        lambda: (
            platform.listener(name) not in (None, victim)
            and (name not in ("intake", "handoff", "metrics") or platform.ready(name))
        ),
        timeout=150 if slow else 60,
        what=f"{name} to be restarted",
    )


def test_every_accepted_request_is_applied_exactly_once_through_faults(
    dev: DevPlatform,
) -> None:
    settings = dev.client_settings()
    streams = set_up(dev, settings)

    with streams:
        streams.flowing("to start")

        _kill(dev, "broker")
        streams.flowing("after the broker's restart")

        # SIGINT is PostgreSQL's fast shutdown; the supervisor starts it again. The 503s
        # counted are those answered before it listens again: the outage lasts the
        # supervisor's check and a start-up (seconds), the lead stream posts many times
        # a second, so some of its writes land in it.
        before_outage = streams.unavailable()
        _kill(dev, "postgres", signal.SIGINT)
        during_outage = streams.unavailable() - before_outage
        wait_until(lambda: dev.ready("intake"), timeout=60, what="PostgreSQL to be back")
        streams.flowing("after PostgreSQL's restart")

        for service in ("intake", "handoff", "metrics"):
            _kill(dev, service)
            streams.flowing(f"after {service}'s restart")

        poisons = asyncio.run(_deliver_everything_again_and_poison(settings))
        streams.flowing("after the poison")

    wait_until_settled(dev, settings)
    assert_applied_exactly_once(dev, settings, streams)

    # Writes during the PostgreSQL outage were answered 503 (not 500s, not hangs).
    assert during_outage > 0, "no write was answered while PostgreSQL was down"

    # Poison in the DLQ; the consumers kept going: what came after it is counted above.
    parked = [json.loads(value) for _, value in asyncio.run(records(settings, DLQ_TOPIC))]
    parked_originals = {p["data"]["original"].get("text", "").encode() for p in parked}
    assert set(poisons) <= parked_originals
