"""Kafka clients configured for this platform, and the one place for broker workarounds.

Gaps of the embedded Tansu broker (memory storage), handled here and only here:

- no idempotent producer (InitProducerId fails): idempotence is a setting;
- topics do not survive a broker restart, and are not created on first produce:
  :func:`ensure_topics` creates them, and the relay calls it again after an outage;
- memory storage loses every record when the broker dies: :class:`RecordsWatch`
  notices, and the relay republishes what its outbox sent that the broker no longer
  holds (never the case on Apache Kafka, whose offsets only grow);
- each fetch scans the whole partition: ``fetch_max_wait_ms`` stays in tens of ms;
- LeaveGroup is not honoured: a restarted group member waits for the old member's
  session to expire, so the session timeout is a setting, short by default;
- a rebalance can redeliver a record, read_committed is not honoured, ListOffsets by
  timestamp is wrong and DeleteRecords is missing: nothing here relies on those, and
  the inbox makes redelivery harmless.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from funnel_common.events import ALL_TOPICS
from funnel_common.settings import CommonSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


def new_producer(settings: CommonSettings) -> AIOKafkaProducer:
    """A producer with ``acks=all`` set explicitly (aiokafka's default is 1)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=2,
    )


def new_consumer(settings: CommonSettings, *, group_id: str, topics: list[str]) -> AIOKafkaConsumer:
    """A consumer-group member that commits offsets itself, after its transaction."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        request_timeout_ms=max(settings.kafka_request_timeout_ms, 40_000),
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        max_poll_records=500,
    )


async def ensure_topics(settings: CommonSettings, names: tuple[str, ...] = ALL_TOPICS) -> None:
    """Create the platform's topics if missing; an existing topic is left as it is."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    settings.topic(name),
                    num_partitions=settings.kafka_topic_partitions,
                    replication_factor=settings.kafka_replication_factor,
                )
                for name in names
            ]
        )
        for topic, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {topic} failed: {code} {message}")
    finally:
        await admin.close()


class RecordsWatch:
    """Tells how many records the broker holds per topic, and notices when it lost some.

    Records are never deleted by this platform, so on a healthy broker a partition's end
    offset only grows; one that went down, or a topic that vanished, means the broker
    lost records (the embedded broker keeps them in memory and dies with them).
    """

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self._client: AIOKafkaConsumer | None = None
        self._last_ends: dict[TopicPartition, int] = {}

    async def _end_offsets(
        self, topics: tuple[str, ...]
    ) -> dict[str, dict[TopicPartition, int] | None]:
        """Each topic's partitions' end offsets; None for a topic the broker lacks."""
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                request_timeout_ms=max(self._settings.kafka_request_timeout_ms, 40_000),
                enable_auto_commit=False,
            )
            await client.start()
            self._client = client
        await self._client.topics()  # fresh metadata: a vanished topic shows as missing
        partitions = {
            topic: [
                TopicPartition(self._settings.topic(topic), partition)
                for partition in self._client.partitions_for_topic(self._settings.topic(topic))
                or ()
            ]
            for topic in topics
        }
        wanted = [tp for tps in partitions.values() for tp in tps]
        ends: dict[TopicPartition, int] = await self._client.end_offsets(wanted) if wanted else {}
        return {
            topic: {tp: ends[tp] for tp in tps} if tps else None
            for topic, tps in partitions.items()
        }

    async def held(self, topic: str) -> int:
        """Records the broker holds for ``topic`` (the sum of its end offsets)."""
        ends = (await self._end_offsets((topic,)))[topic] or {}
        self._last_ends.update(ends)
        return sum(ends.values())

    async def lost_records(self, topics: tuple[str, ...]) -> bool:
        """True when any of ``topics`` shrank or vanished since the last look."""
        lost = False
        for topic, ends in (await self._end_offsets(topics)).items():
            if ends is None:
                physical = self._settings.topic(topic)
                lost = lost or any(tp.topic == physical for tp in self._last_ends)
                continue
            lost = lost or any(end < self._last_ends.get(tp, 0) for tp, end in ends.items())
            self._last_ends.update(ends)
        return lost

    async def close(self) -> None:
        client, self._client = self._client, None
        self._last_ends.clear()
        if client is not None:
            await client.stop()


async def broker_reachable(settings: CommonSettings, within_seconds: float = 1.0) -> bool:
    """True when a bootstrap server accepts a TCP connection within ``within_seconds``."""
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connecting = asyncio.open_connection(host, int(port))
            _, writer = await asyncio.wait_for(connecting, within_seconds)
        except (OSError, TimeoutError):
            continue
        writer.close()
        return True
    return False
