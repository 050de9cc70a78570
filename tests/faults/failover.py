"""Apache Kafka losing brokers under the fault suite's streams (tests/faults/test_faults.py
runs it on Apache Kafka): three KRaft nodes (each broker and controller), replication 3,
``min.insync.replicas=2``, the platform as ``funnel dev`` runs it against a cluster of
one's own.

1. the broker leading the most partitions is SIGKILLed: publishing resumes on the
   other two;
2. a second broker is SIGKILLed, the active controller: below min.insync.replicas (and
   below the controller quorum) writes are still accepted into the outboxes with 202,
   and nothing is published;
3. both come back (on their storage): publishing resumes by itself;
4. a rolling restart of all three (SIGTERM, start, wait until every partition is fully
   replicated again), which moves the active controller at least once.

It measures how long publishing stopped after each kill and how long the consumers took
to catch up after the last restart (docs/guarantees.md keeps the figures).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from funnel_common.events import ALL_TOPICS, LEADS_TOPIC
from funnel_common.kafka import partitions_of
from funnel_common.settings import CommonSettings
from funnel_tools.apache_kafka import ApacheKafkaCluster, ApacheKafkaNode
from funnel_tools.devplatform import DevPlatform
from funnel_tools.embedded import wait_until
from metrics.handlers import TOPICS as METRICS_TOPICS
from tests.faults.checks import Streams

SCHEMAS = ("intake", "handoff", "metrics")
GROUPS = {"handoff": [LEADS_TOPIC], "metrics": list(METRICS_TOPICS)}
NODE_START_SECONDS = 240


def _database(dev: DevPlatform, query: str, *args: object) -> object:
    async def ask() -> object:
        connection = await asyncpg.connect(dev.database_url)
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    return asyncio.run(ask())


def now_in_database(dev: DevPlatform) -> datetime:
    """PostgreSQL's clock: the one the outboxes' created_at and sent_at are on."""
    moment = _database(dev, "SELECT clock_timestamp()")
    assert isinstance(moment, datetime)
    return moment


def _outboxes(select: str) -> str:
    return " UNION ALL ".join(select.format(schema=schema) for schema in SCHEMAS)


def published_since(dev: DevPlatform, moment: datetime) -> int:
    """Events written after ``moment`` that the broker has acknowledged (acks=all)."""
    count = _database(
        dev,
        "SELECT count(*) FROM ("
        + _outboxes("SELECT 1 FROM {schema}.outbox WHERE created_at > $1 AND sent_at IS NOT NULL")
        + ") AS sent",
        moment,
    )
    assert isinstance(count, int)
    return count


def unsent(dev: DevPlatform) -> int:
    count = _database(
        dev,
        "SELECT count(*) FROM ("
        + _outboxes("SELECT 1 FROM {schema}.outbox WHERE sent_at IS NULL")
        + ") AS waiting",
    )
    assert isinstance(count, int)
    return count


def seconds_until_published_again(dev: DevPlatform, since: datetime) -> float:
    """From ``since`` to the first acknowledgement of an event written after it."""
    query = (
        "SELECT min(sent_at) FROM ("
        + _outboxes("SELECT sent_at FROM {schema}.outbox WHERE created_at > $1")
        + ") AS sent"
    )
    wait_until(
        lambda: _database(dev, query, since) is not None,
        timeout=NODE_START_SECONDS,
        what="an event written after the fault to be published",
        interval=0.2,
    )
    first = _database(dev, query, since)
    assert isinstance(first, datetime)
    return (first - since).total_seconds()


async def _fully_replicated(bootstrap_servers: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    try:
        await admin.start()
        described = await admin.describe_topics()
    except Exception:
        return False
    finally:
        await admin.close()
    return all(
        len(partition["isr"]) == len(partition["replicas"])
        for topic in described
        for partition in topic["partitions"]
    )


async def _consumer_lag(settings: CommonSettings) -> int:
    """Records on the topics that a consumer group has not committed yet, over every
    group of the platform."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await reader.start()
    try:
        lag = 0
        for group, topics in GROUPS.items():
            committed = await admin.list_consumer_group_offsets(group)
            partitions = await partitions_of(reader, topics)
            ends = await reader.end_offsets(partitions)
            for partition in partitions:
                offset = committed.get(partition)
                lag += ends[partition] - (offset.offset if offset is not None else 0)
        return lag
    finally:
        await reader.stop()
        await admin.close()


def start_again(cluster: ApacheKafkaCluster, *nodes: ApacheKafkaNode) -> None:
    # From this (main) thread: the JVM dies with the thread that started it.
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready(timeout=NODE_START_SECONDS)


def relay_waits(dev: DevPlatform) -> Counter[str]:
    """How often the relays waited for the broker, by the error they waited on."""
    waits: Counter[str] = Counter()
    for log in (dev.data_dir / "logs").glob("*-worker.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "outbox relay waiting" in line:
                try:
                    waits[json.loads(line).get("error", "?")] += 1
                except ValueError:
                    waits["?"] += 1
    return waits


def report(figures: dict[str, float], waits: Counter[str]) -> None:
    lines = [f"  {what}: {seconds:.1f} s" for what, seconds in figures.items()]
    lines.append(f"  relay waits by error: {dict(waits)}")
    print("\nApache Kafka failover (3 nodes):\n" + "\n".join(lines))  # noqa: T201


@dataclass
class Failover:
    """What the failover measured: seconds by what, and the active controllers seen."""

    figures: dict[str, float] = field(default_factory=dict)
    controllers: list[int] = field(default_factory=list)
    last_restart: float = 0.0


def kill_and_restart_brokers(
    dev: DevPlatform, cluster: ApacheKafkaCluster, streams: Streams
) -> Failover:
    """Steps 1-4 above, while the streams run; returns once they flow after the last."""
    seen = Failover()
    figures = seen.figures

    # 1. The broker leading the most partitions.
    first = asyncio.run(cluster.busiest_leader(list(ALL_TOPICS)))
    killed = now_in_database(dev)
    first.kill()
    figures["1st kill (busiest leader) -> published again"] = seconds_until_published_again(
        dev, killed
    )
    streams.flowing("with one broker down")

    # 2. The active controller too: below min.insync.replicas and the quorum.
    second = cluster.active_controller()
    assert second is not None, "no active controller with two of three nodes up"
    seen.controllers.append(second.node_id)
    accepted = len(streams.leads.accepted)
    second_killed = now_in_database(dev)
    second.kill()
    streams.leads.wait_for_more(30, timeout=120)
    wait_until(lambda: unsent(dev) >= 30, timeout=60, what="writes waiting in the outboxes")
    assert published_since(dev, second_killed) == 0, "published below min.insync.replicas"
    assert len(streams.leads.accepted) - accepted >= 30

    # 3. Both back, on their storage.
    restarted = now_in_database(dev)
    start_again(cluster, first, second)
    serving = now_in_database(dev)
    back = seconds_until_published_again(dev, second_killed)
    figures["2nd kill (controller) -> published again"] = back
    figures["both restarted -> published again"] = (
        back - (restarted - second_killed).total_seconds()
    )
    figures["both serving clients again -> published again"] = max(
        0.0, back - (serving - second_killed).total_seconds()
    )
    streams.flowing("with every broker back", timeout=NODE_START_SECONDS)

    # 4. A rolling restart: one node at a time, each once fully replicated again.
    for node in cluster.nodes:
        wait_until(
            lambda: asyncio.run(_fully_replicated(cluster.bootstrap_servers)),
            timeout=NODE_START_SECONDS,
            what="every partition fully replicated",
            interval=0.5,
        )
        active = cluster.active_controller()
        if active is not None:
            seen.controllers.append(active.node_id)
        node.stop()
        start_again(cluster, node)
    seen.last_restart = time.monotonic()
    streams.flowing("after the rolling restart", timeout=NODE_START_SECONDS)
    wait_until(lambda: cluster.active_controller() is not None, timeout=60, what="a controller")
    final = cluster.active_controller()
    assert final is not None
    seen.controllers.append(final.node_id)
    return seen


def caught_up(dev: DevPlatform, settings: CommonSettings, seen: Failover) -> None:
    """Once the streams have stopped: nothing left in an outbox, every group at the end of
    its topics; records the time from the last restart."""
    wait_until(
        lambda: unsent(dev) == 0 and asyncio.run(_consumer_lag(settings)) == 0,
        timeout=NODE_START_SECONDS,
        what="every outbox drained and every consumer caught up",
        interval=0.5,
    )
    seen.figures["last restart -> every consumer caught up"] = time.monotonic() - seen.last_restart
