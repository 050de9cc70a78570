"""Reading a test's topics directly, as an outside observer."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from funnel_common.settings import CommonSettings


async def read_topic(
    settings: CommonSettings, topic: str, *, expect: int, timeout: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """All records of ``topic`` once at least ``expect`` arrived (or the deadline passed)."""
    # Manual assignment, no group: an observer must not wait for a rebalance.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    consumer.assign(
        [TopicPartition(settings.topic(topic), p) for p in range(settings.kafka_topic_partitions)]
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend(batch)
        # Whatever else is already there (e.g. an unwanted duplicate) is read too.
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records
