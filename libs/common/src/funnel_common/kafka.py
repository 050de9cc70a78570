"""Kafka clients configured for this platform, and the one place for broker workarounds.

Production runs Apache Kafka: idempotent producer, ``acks=all``, topics created with
the configured partitions and replication (and the replayed ones kept forever), the
consumer's timing at Kafka's defaults. None of the workarounds below runs there.

Gaps of the embedded Tansu broker (memory storage), handled here and only here. Each
workaround is switched on by a setting that ``funnel dev`` and the test fixtures set for
Tansu alone (``EmbeddedBroker.CLIENT_SETTINGS``):

- no idempotent producer (InitProducerId fails): ``kafka_enable_idempotence`` off;
- memory storage loses every record (and topic) when the broker dies
  (``kafka_volatile_broker``): the relay keeps its sent outbox rows and publishes them
  all again when the broker is a new one (:meth:`RecordsWatch.cluster_id`: the embedded
  broker takes a new cluster id at each start), or when the broker holds fewer records
  than were sent to it (:meth:`RecordsWatch.held`, for a volatile broker whose id does
  not change), see ``funnel_common.volatile_broker``; it creates the topics again after
  every outage; a consumer whose
  position is past a partition's new end reads it again from the start
  (``consumer.rewind_if_log_was_reset``);
- a metadata request for a missing topic auto-creates it with the broker's default
  partition count, so after a restart partition counts may differ from the setting:
  nothing here assumes them;
- each fetch scans the whole partition: ``kafka_fetch_max_wait_ms`` is 20 ms there;
- ListOffsets(latest) answers the last batch's base offset + 1, not the end: the
  watch reads the true end from a fetch's high watermark (:meth:`RecordsWatch.held`);
- LeaveGroup is not honoured: a restarted group member waits for the old member's
  session to expire, so the session, heartbeat and rebalance timeouts are short there;
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

from funnel_common.events import (
    ACCESS_TOPIC,
    ACCOUNTS_TOPIC,
    ALL_TOPICS,
    DEALS_TOPIC,
    DLQ_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    PEOPLE_TOPIC,
    ROSTER_TOPIC,
    TARGETS_TOPIC,
)
from funnel_common.settings import CommonSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36

_HOUR_MS = str(3600 * 1000)
# `funnel replay` rebuilds metrics from these topics, so they keep every record (Kafka's
# default would drop them after 7 days), as does the roster's audit trail; the tokens
# are compacted (the latest word on each token is kept for good); the DLQ keeps a
# month. As in deploy/ (Strimzi's KafkaTopics, compose).
KEPT_FOREVER = "-1"
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    **{
        name: {"retention.ms": KEPT_FOREVER}
        for name in (
            LEADS_TOPIC,
            HANDOFFS_TOPIC,
            DEALS_TOPIC,
            ACCOUNTS_TOPIC,
            TARGETS_TOPIC,
            ROSTER_TOPIC,
        )
    },
    ACCESS_TOPIC: {"cleanup.policy": "compact"},
    DLQ_TOPIC: {"retention.ms": str(30 * 24 * 3600 * 1000)},
    # funnel.people holds each person's wrapped data key; an erasure's tombstone must make
    # compaction drop it soon, not whenever the log happens to be dirty enough: segments
    # roll hourly (the active one is never compacted), a record waits at most a day to be
    # compacted, and a tombstone is kept an hour after that (docs/privacy.md).
    PEOPLE_TOPIC: {
        "cleanup.policy": "compact",
        "segment.ms": _HOUR_MS,
        "max.compaction.lag.ms": str(24 * 3600 * 1000),
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": _HOUR_MS,
    },
}


def new_producer(settings: CommonSettings) -> AIOKafkaProducer:
    """A producer with ``acks=all`` set explicitly (aiokafka's default is 1), idempotent
    unless the broker cannot be (the embedded one)."""
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
    """Create the platform's topics if missing, with the configured partitions and
    replication and their retention (:data:`TOPIC_CONFIGS`); an existing topic is left
    as it is."""
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
                    topic_configs=TOPIC_CONFIGS.get(name, {}),
                )
                for name in names
            ]
        )
        for topic, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {topic} failed: {code} {message}")
    finally:
        await admin.close()


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (physical names), from fresh metadata, for a
    consumer that assigns partitions itself.

    ``consumer.partitions_for_topic()`` knows only the topics its client bootstrapped
    with: Apache Kafka answers that first metadata request (an empty topic list) with no
    topics at all, Tansu with all of them; and ``consumer.topics()`` fetches metadata but
    keeps it to itself. The client's own fetch answers for every topic.
    """
    cluster = await consumer._client.fetch_all_metadata()
    return [
        TopicPartition(topic, partition)
        for topic in topics
        for partition in sorted(cluster.partitions_for_topic(topic) or ())
    ]


class RecordsWatch:
    """Tells how many records a volatile broker holds per topic.

    Only for a broker declared volatile (``kafka_volatile_broker``): there nothing is
    ever deleted, so a healthy broker holds at least as many records of a topic as were
    published to it, and fewer means it lost some (the embedded broker keeps records in
    memory and dies with them). On Apache Kafka retention deletes records by design and
    nothing is lost, so the relay never builds one.
    """

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self._client: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def cluster_id(self) -> str | None:
        """The broker's cluster id. The embedded broker takes a new one at each start,
        because it starts empty: another id than before means every record is gone."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                request_timeout_ms=self._settings.kafka_request_timeout_ms,
            )
            await admin.start()
            self._admin = admin
        described = await self._admin.describe_cluster()
        cluster_id = described.get("cluster_id")
        return str(cluster_id) if cluster_id else None

    async def held(self, topic: str) -> int | None:
        """Records the broker holds for ``topic`` (the sum of its partitions' ends), or
        None when the broker did not tell in time.

        The end comes from a fetch's high watermark: Tansu answers ListOffsets(latest)
        with the last *batch's* base offset + 1, which undercounts multi-record batches
        but is a safe place to fetch from to learn the true end.
        """
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                request_timeout_ms=max(self._settings.kafka_request_timeout_ms, 40_000),
                enable_auto_commit=False,
                fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
            )
            await client.start()
            self._client = client
        # Fresh metadata: partitions may differ after a restart; a topic this consumer has
        # no metadata for once looked empty (a false loss, republished forever).
        partitions = await partitions_of(self._client, [self._settings.topic(topic)])
        if not partitions:
            return 0
        lower_bounds = await self._client.end_offsets(partitions)
        self._client.assign(partitions)
        for partition in partitions:
            self._client.seek(partition, max(0, lower_bounds[partition] - 1))
        for _ in range(50):
            if all(self._client.highwater(p) is not None for p in partitions):
                break
            await self._client.getmany(*partitions, timeout_ms=100, max_records=1)
        high_waters = [self._client.highwater(p) for p in partitions]
        if any(high_water is None for high_water in high_waters):
            return None  # the broker did not tell in time (e.g. under load): not a loss
        return sum(high_water or 0 for high_water in high_waters)

    async def close(self) -> None:
        client, self._client = self._client, None
        admin, self._admin = self._admin, None
        if client is not None:
            await client.stop()
        if admin is not None:
            await admin.close()


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
