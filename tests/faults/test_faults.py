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

It runs on the embedded broker and on Apache Kafka. On Apache Kafka the platform runs
against three KRaft nodes (replication 3, min.insync.replicas=2) and, instead of the one
broker kill, loses brokers as tests/faults/failover.py says: the busiest leader, then
the active controller (below min.insync.replicas: writes still accepted, nothing
published), both back, a rolling restart of all three; it prints how long publishing
stopped and how long the consumers took to catch up. One platform and one set of
streams for both, as the 2-core CI machine's budget asks (docs/testing.md).
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
from funnel_tools.apache_kafka import ApacheKafkaCluster
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import wait_until
from tests.brokers import BrokerKind, java_processes_under, kafka_lib_dir_or_skip
from tests.faults.checks import assert_applied_exactly_once, set_up, wait_until_settled
from tests.faults.failover import (
    NODE_START_SECONDS,
    Failover,
    caught_up,
    kill_and_restart_brokers,
    relay_waits,
    report,
)
from tests.faults.readback import records

# Three JVMs and `funnel dev` on two shared cores: starts alone take minutes under load.
pytestmark = [pytest.mark.faults, pytest.mark.both_brokers, pytest.mark.timeout(1500)]

POISON_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC)


@pytest.fixture
def cluster(broker_kind: BrokerKind, tmp_path: Path) -> Iterator[ApacheKafkaCluster | None]:
    """Three Apache Kafka nodes on Kafka (none on Tansu: `funnel dev` runs its own)."""
    if broker_kind != "kafka":
        yield None
        return
    cluster = ApacheKafkaCluster(tmp_path / "kafka", lib_dir=kafka_lib_dir_or_skip(), size=3)
    cluster.start(timeout=NODE_START_SECONDS)
    yield cluster
    cluster.stop()
    assert java_processes_under(cluster.root) == [], "a Kafka JVM survived the stop"


@pytest.fixture
def dev(
    tmp_path: Path, broker_kind: BrokerKind, cluster: ApacheKafkaCluster | None
) -> Iterator[DevPlatform]:
    ports, output = free_ports(), tmp_path / "dev.out"
    if cluster is None:
        platform = start_dev(tmp_path / "funnel", ports, output, broker=broker_kind)
    else:
        platform = start_dev(
            tmp_path / "funnel",
            ports,
            output,
            {"FUNNEL_KAFKA_REPLICATION_FACTOR": "3"},
            broker="external",
            external_bootstrap=cluster.bootstrap_servers,
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
    dev: DevPlatform, cluster: ApacheKafkaCluster | None, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dev.client_settings()
    streams = set_up(dev, settings)
    failover: Failover | None = None

    with streams:
        streams.flowing("to start")

        if cluster is None:
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

        if cluster is not None:
            failover = kill_and_restart_brokers(dev, cluster, streams)

    if failover is not None:
        caught_up(dev, settings, failover)
        with capsys.disabled():  # the figures belong in make test's output
            report(failover.figures, relay_waits(dev))
        # The controller moved at least once (the rolling restart stopped the active one).
        assert len(set(failover.controllers)) >= 2, failover.controllers
    wait_until_settled(dev, settings)
    assert_applied_exactly_once(dev, settings, streams)

    # Writes during the PostgreSQL outage were answered 503 (not 500s, not hangs).
    assert during_outage > 0, "no write was answered while PostgreSQL was down"

    # Poison in the DLQ; the consumers kept going: what came after it is counted above.
    parked = [json.loads(value) for _, value in asyncio.run(records(settings, DLQ_TOPIC))]
    parked_originals = {p["data"]["original"].get("text", "").encode() for p in parked}
    assert set(poisons) <= parked_originals
