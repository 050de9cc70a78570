"""`funnel replay` events/s, against plain consumption of the same topics in the same run."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.history import journeys, produce
from bench.measures import Figure
from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
)
from funnel_common.kafka import partitions_of
from funnel_common.types import utc_now
from funnel_tools.devplatform import DevPlatform

# The metrics service's topics (as metrics.handlers.TOPICS); stated here so the bench
# reads what a replay reads without importing the service.
TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC)
TARGET_EVENTS_PER_SECOND = 30_000


@dataclass
class Consumed:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def plain_consumption(bootstrap_servers: str) -> Consumed:
    """Every record of the metrics topics, from the beginning to the high watermarks, by
    an aiokafka consumer that does nothing with them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=20, request_timeout_ms=40_000,
    )  # fmt: skip
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, list(TOPICS))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started, records = time.perf_counter(), 0
        while True:
            batches = await consumer.getmany(timeout_ms=300)
            records += sum(len(batch) for batch in batches.values())
            if await _caught_up(consumer, partitions):
                return Consumed(records, time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for partition in partitions:
        highwater = consumer.highwater(partition)
        if highwater is None or await consumer.position(partition) < highwater:
            return False
    return True


async def _fill(platform: DevPlatform, leads: int, seed: int) -> list[UUID]:
    """Produce ``leads`` journeys; the last event id of each partition written."""
    settings = platform.client_settings()
    last = await produce(settings, journeys(leads, now=utc_now(), seed=seed))
    return list(last.values())


async def _live_caught_up(platform: DevPlatform, last: list[UUID], within: float = 240) -> bool:
    """Wait until the live metrics service has applied each partition's last event: it
    consumes a partition in order, so everything before it is applied too. (The broker
    answers no OffsetFetch from an admin client, so committed offsets cannot tell.)"""
    connection = await asyncpg.connect(platform.database_url)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            applied = await connection.fetchval(
                "SELECT count(*) FROM metrics.inbox WHERE event_id = ANY($1::uuid[])", last
            )
            if applied == len(last):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await connection.close()


@dataclass
class ReplayRun:
    read: int
    seconds: float
    wall_seconds: float
    switched: bool
    output: str


READ = re.compile(r"read (\d+) events in ([\d.]+) s")


def run_replay(platform: DevPlatform) -> ReplayRun:
    """`funnel replay` as an operator runs it against the platform (it switches over)."""
    env = {
        **os.environ,
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": platform.bootstrap_servers,
        # metrics' own role: the schemas a replay creates and renames must stay its own.
        "FUNNEL_METRICS_DATABASE_URL": platform.service_database_url("metrics"),
        "FUNNEL_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    funnel = Path(sys.executable).with_name("funnel")
    started = time.perf_counter()
    done = subprocess.run(
        [str(funnel), "replay"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    wall = time.perf_counter() - started
    output = done.stdout + done.stderr
    found = READ.search(output)
    read, seconds = (int(found[1]), float(found[2])) if found else (0, wall)
    return ReplayRun(read, seconds, wall, done.returncode == 0 and "switched:" in output, output)


async def replay_rate(platform: DevPlatform, *, leads: int = 7_000) -> list[Figure]:
    """Fill the topics in two halves; plain consumption after each (does the broker's
    whole-partition scan per fetch slow reading as topics grow?), then `funnel replay`."""
    # Plain consumption waits for the live consumer each time, so neither competes.
    caught_up = await _live_caught_up(platform, await _fill(platform, leads // 2, seed=1))
    half = await plain_consumption(platform.bootstrap_servers)
    last = await _fill(platform, leads - leads // 2, seed=2)
    caught_up = caught_up and await _live_caught_up(platform, last)
    full = await plain_consumption(platform.bootstrap_servers)
    replay = run_replay(platform)
    if not replay.switched:
        print(replay.output, file=sys.stderr)  # noqa: T201 - the bench reports to a person
    rate = replay.read / replay.seconds if replay.seconds else 0.0
    target = f">= {TARGET_EVENTS_PER_SECOND:,} events/s"
    return [
        Figure(f"replay events/s ({replay.read:,} events)", rate, "events/s",
               "plain consumption, same topics", full.rate, target,
               rate >= TARGET_EVENTS_PER_SECOND and replay.switched and caught_up),
        Figure("replay whole command, start to exit", replay.wall_seconds, "s"),
        Figure(f"plain consumption at half the events ({half.records:,})", half.rate,
               "events/s", f"at all {full.records:,} events", full.rate),
    ]  # fmt: skip
