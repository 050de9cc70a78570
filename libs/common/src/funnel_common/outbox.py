"""Transactional outbox: write events in the caller's transaction; relay them to Kafka.

:func:`transaction` is the unit of work: a pooled connection in one transaction that,
once committed, wakes the relay if :func:`enqueue` wrote events in it. Nobody wakes the
relay by hand.

:class:`OutboxRelay` publishes unsent rows in sequence order and marks them sent. It
wakes on LISTEN/NOTIFY and also polls, so a lost notification only delays. Only one
relay per schema publishes at a time (a session advisory lock held by its listening
connection), which keeps one entity's events in order with several replicas running.
Publishing is at-least-once: a crash between publish and mark re-sends, and the
consumers' inbox makes that harmless. With the broker down, rows wait; they drain when
it returns. Each record follows the CloudEvents Kafka binding in structured mode.

What happens to sent rows depends on the broker. A durable one (Apache Kafka) keeps the
events, so sent rows older than ``outbox_retention_seconds`` are deleted, a bounded
batch at a time. A volatile one (the embedded broker, ``kafka_volatile_broker``) may
come back empty: rows are kept, and when the broker is a new one (another cluster id
than the one the rows went to, kept in ``outbox_broker``) or holds fewer records than
were sent to it, the relay publishes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry import propagate, trace

from funnel_common.db import is_unavailable
from funnel_common.events import STRUCTURED_CONTENT_TYPE, Envelope, encode_event
from funnel_common.kafka import ensure_topics, new_producer
from funnel_common.retry import Backoff
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics, delivered_attributes, messaging_attributes
from funnel_common.volatile_broker import LostRecords

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_MAX_BACKOFF_SECONDS = 5.0
# The least time one exchange with the broker (checks, a batch's deliveries) may take.
_BROKER_DEADLINE_SECONDS = 15.0
# Pruning a durable broker's sent rows: at most this many batches per round, so that
# publishing never waits long behind it; rounds at most this often.
_PRUNE_BATCHES_PER_ROUND = 20
_PRUNE_EVERY_SECONDS = 10.0
_CONTENT_TYPE_HEADER = ("content-type", STRUCTURED_CONTENT_TYPE.encode())


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's outbox."""
    return f"funnel_outbox_{schema}"


@dataclass
class _UnitOfWork:
    enqueued: bool = False


# The unit of work the current task is inside, so that enqueue can tell it to wake the
# relay after its commit. A context variable, not a flag on the connection: each request,
# consumer batch or scanner step runs in its own task and sees only its own unit.
_current_unit: ContextVar[_UnitOfWork | None] = ContextVar("funnel_outbox_unit", default=None)


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One unit of work: a connection from ``pool`` in one transaction.

    The transaction commits when the block ends without an error (and rolls back
    otherwise); after the commit, the relay is woken if events were enqueued in it.
    """
    unit = _UnitOfWork()
    token = _current_unit.set(unit)
    try:
        async with pool.acquire() as connection:
            async with connection.transaction():
                yield connection
            if unit.enqueued:
                await _wake_relay(connection)
    finally:
        _current_unit.reset(token)


async def enqueue(connection: asyncpg.Connection, *events: Envelope) -> None:
    """Write ``events`` to the outbox inside the caller's open transaction.

    The events continue the current trace. Inside :func:`transaction`, the relay is
    woken once it has committed; elsewhere the relay's poll finds them.
    """
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    await enqueue_traced(connection, [(event, trace_headers) for event in events])


async def enqueue_traced(
    connection: asyncpg.Connection, events: Sequence[tuple[Envelope, Mapping[str, str]]]
) -> None:
    """Like :func:`enqueue`, each event with the trace context it continues.

    For a transaction that writes the work of several requests (group commit): each
    event's publish span then belongs to the trace of the request that caused it.
    """
    if not connection.is_in_transaction():
        raise RuntimeError("outbox.enqueue must run inside the caller's transaction")
    # An event enqueued twice (a dead letter parked again after a crash) is one row.
    await connection.executemany(
        """INSERT INTO outbox (event_id, event_type, topic, event_key, payload, trace_headers)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)
           ON CONFLICT (event_id) DO NOTHING""",
        [
            (
                event.id,
                event.type,
                event.topic,
                event.key,
                encode_event(event),
                json.dumps(trace_headers),
            )
            for event, trace_headers in events
        ],
    )
    unit = _current_unit.get()
    if unit is not None:
        unit.enqueued = True


TOMBSTONE = "tombstone"
"""The ``event_type`` of an outbox row that publishes a tombstone (a record without a value)."""


async def enqueue_tombstones(connection: asyncpg.Connection, topic: str, keys: list[str]) -> None:
    """Write a tombstone for each of ``keys`` on the compacted ``topic`` to the outbox,
    inside the caller's open transaction: compaction then drops every earlier record of
    that key (an erased person's wrapped key on ``funnel.people``). Consumers skip them.
    """
    if not connection.is_in_transaction():
        raise RuntimeError("outbox.enqueue_tombstones must run inside the caller's transaction")
    await connection.executemany(
        """INSERT INTO outbox (event_id, event_type, topic, event_key, payload)
           VALUES ($1, $2, $3, $4, NULL)""",
        [(uuid4(), TOMBSTONE, topic, key.encode()) for key in keys],
    )
    unit = _current_unit.get()
    if unit is not None:
        unit.enqueued = True


async def _wake_relay(connection: asyncpg.Connection) -> None:
    """After the transaction that enqueued events has committed: wake the relay.

    The NOTIFY is deliberately not part of the writing transaction. PostgreSQL holds a
    database-wide lock from a notifying transaction's pre-commit until its commit record
    is flushed, so a NOTIFY inside every write serializes all commits behind one another's
    fsync and defeats group commit (measured: 35 writes/s instead of over 1,000). Here
    it is a transaction of its own that does not wait for the flush: a wake-up lost in a
    crash only delays publication until the relay's next poll.
    """
    try:
        await connection.execute(
            "BEGIN; SET LOCAL synchronous_commit TO off; "
            "SELECT pg_notify('funnel_outbox_' || current_schema(), ''); COMMIT;"
        )
    except Exception as error:
        # The write has committed: its caller must not answer "nothing was stored" (a
        # 503 invites a retry that would repeat it) nor apply an event again because
        # only the wake-up failed (PostgreSQL shutting down). The relay's poll covers it.
        log.warning("outbox wake-up failed", extra={"error": type(error).__name__})


class OutboxRelay:
    """Publishes a schema's outbox to Kafka until cancelled."""

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        settings: CommonSettings,
        metrics: PlatformMetrics,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._topics_ready = False
        # Only a volatile broker is watched for lost records (see volatile_broker.py).
        self._lost = (
            LostRecords(settings, schema=schema) if settings.kafka_volatile_broker else None
        )
        self._next_prune = 0.0
        self.is_leader = False

    async def run(self) -> None:
        """Relay forever; every outage is waited out with capped, jittered backoff."""
        backoff = Backoff(first=0.1, cap=_MAX_BACKOFF_SECONDS)
        try:
            while True:
                try:
                    await self._run_connected()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # A relay that was publishing had recovered: start from a short wait.
                    if self.is_leader:
                        backoff.reset()
                    self.is_leader = False
                    # A broker that does not answer within the deadline (TimeoutError)
                    # is an outage like one that refuses.
                    waiting = isinstance(error, KafkaError | TimeoutError)
                    if not (is_unavailable(error) or waiting):
                        log.exception(
                            "outbox relay failed; retrying", extra={"schema": self._schema}
                        )
                    else:
                        log.warning(
                            "outbox relay waiting for a dependency",
                            extra={"schema": self._schema, "error": type(error).__name__},
                        )
                    await self._drop_producer()
                    await backoff.wait()
                else:
                    backoff.reset()
        finally:
            await self._drop_producer()

    async def _run_connected(self) -> None:
        listener: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=5, server_settings={"search_path": self._schema}
        )
        try:
            await listener.add_listener(notify_channel(self._schema), self._on_notify)
            while not self.is_leader:
                self.is_leader = await listener.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext('funnel.outbox'), hashtext($1))",
                    self._schema,
                )
                if not self.is_leader:
                    await self._sleep_or_wake()
            while True:
                await self._drain(listener)
                await self._prune(listener)
                await self._sleep_or_wake()
        finally:
            self.is_leader = False
            await listener.close(timeout=2)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep_or_wake(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self._settings.outbox_poll_interval_seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _prepare_broker(self, connection: asyncpg.Connection) -> None:
        """Make sure the topics exist and, on a volatile broker, still hold what this
        outbox sent to them."""
        await ensure_topics(self._settings)
        if self._lost is not None:
            await self._lost.republish(connection)
        self._topics_ready = True

    async def _measure_backlog(self, connection: asyncpg.Connection) -> None:
        backlog = await connection.fetchrow(
            """SELECT count(*) AS rows,
                      extract(epoch FROM clock_timestamp() - min(created_at)) AS age
               FROM outbox WHERE sent_at IS NULL"""
        )
        self._metrics.outbox_backlog.set(backlog["rows"])
        self._metrics.outbox_oldest_age.set(float(backlog["age"] or 0))

    async def _drain(self, connection: asyncpg.Connection) -> None:
        # Measured first: with the broker down, publishing fails below, and the backlog
        # and its age are exactly what the outbox alert must see grow.
        await self._measure_backlog(connection)
        if (
            self._lost is not None
            and self._topics_ready
            and await self._lost.lost_since(self._broker_deadline)
        ):
            self._topics_ready = False  # prepared again below: the lost rows republished
        if not self._topics_ready:
            async with self._broker_deadline():
                await self._prepare_broker(connection)
        while True:
            rows = await connection.fetch(
                """SELECT seq, event_id, topic, event_key, payload, trace_headers, created_at
                   FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1""",
                self._settings.outbox_batch_size,
            )
            if rows:
                async with self._broker_deadline():
                    await self._publish(rows)
                await connection.execute(
                    "UPDATE outbox SET sent_at = clock_timestamp() WHERE seq = ANY($1::bigint[])",
                    [row["seq"] for row in rows],
                )
                self._metrics.outbox_published.inc(len(rows))
                if self._lost is not None:
                    self._lost.count_sent(row["topic"] for row in rows)
            await self._measure_backlog(connection)
            if len(rows) < self._settings.outbox_batch_size:
                return

    async def _prune(self, connection: asyncpg.Connection) -> None:
        """On a durable broker, delete sent rows older than the retention setting, oldest
        first, a bounded batch at a time: the broker keeps the events, so the table stays
        as large as the retention window and no larger.

        The oldest rows by sequence are the candidates (the primary key finds them with
        no scan); a round stops at the first batch that deletes fewer than it took, i.e.
        at rows still too young (or not yet sent)."""
        if self._lost is not None or time.monotonic() < self._next_prune:
            return
        retention = self._settings.outbox_retention_seconds
        self._next_prune = time.monotonic() + min(_PRUNE_EVERY_SECONDS, retention / 2)
        batch = self._settings.outbox_batch_size
        for _ in range(_PRUNE_BATCHES_PER_ROUND):
            deleted = await connection.execute(
                """WITH oldest AS (SELECT seq FROM outbox ORDER BY seq LIMIT $2)
                   DELETE FROM outbox
                   WHERE seq IN (SELECT seq FROM oldest)
                     AND sent_at < clock_timestamp() - make_interval(secs => $1)""",
                retention,
                batch,
            )
            if int(deleted.split()[-1]) < batch:
                return
        self._next_prune = 0.0  # more to delete than one round takes: go on next cycle

    def _broker_deadline(self) -> asyncio.Timeout:
        """A bound on one exchange with the broker. Not every aiokafka call is bounded by
        its request timeout: after a kill -9 of the embedded broker, a relay once stopped
        publishing for good, with no error (seen in the fault suite); and an idempotent
        producer of Apache Kafka retries forever while the controller quorum is lost. On
        timeout the relay drops its producer and starts again; the rows were not marked
        sent, so they are published again and the consumers' inboxes drop what they
        already applied."""
        request_timeout = self._settings.kafka_request_timeout_ms / 1000
        return asyncio.timeout(max(_BROKER_DEADLINE_SECONDS, 3 * request_timeout))

    async def _publish(self, rows: Iterable[asyncpg.Record]) -> None:
        producer = await self._ready_producer()
        deliveries = []
        spans: list[trace.Span] = []
        try:
            for row in rows:
                topic = self._settings.topic(row["topic"])
                # The publish span continues the trace of the transaction that wrote the
                # row (e.g. the form POST); consumers continue from it. It ends when the
                # broker has the record, and names the partition and offset it got.
                span = tracer.start_span(
                    f"{topic} publish",
                    context=propagate.extract(json.loads(row["trace_headers"])),
                    kind=trace.SpanKind.PRODUCER,
                    attributes=messaging_attributes(topic, row["event_id"], operation="send"),
                )
                spans.append(span)
                with trace.use_span(span, end_on_exit=False):
                    headers: dict[str, str] = {}
                    propagate.inject(headers)
                    deliveries.append(
                        await producer.send(
                            topic,
                            value=row["payload"],
                            key=row["event_key"],
                            headers=[
                                # A tombstone (no value) is no CloudEvent: no content-type.
                                *([_CONTENT_TYPE_HEADER] if row["payload"] is not None else []),
                                *((name, value.encode()) for name, value in headers.items()),
                            ],
                            # The record's timestamp is when the event was recorded, so the
                            # event-to-metric lag includes any wait here for the broker.
                            timestamp_ms=int(row["created_at"].timestamp() * 1000),
                        )
                    )
            delivered = await asyncio.gather(*deliveries)
            for span, metadata in zip(spans, delivered, strict=True):
                span.set_attributes(delivered_attributes(metadata.partition, metadata.offset))
        except BaseException as error:
            for span in spans:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    async def _ready_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = new_producer(self._settings)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if self._lost is not None:
            # A volatile broker may have come back empty: create the topics again and
            # compare what it holds with what was sent (_prepare_broker).
            self._topics_ready = False
            await _close_within_deadline(self._lost.close(), "records watch")
        if producer is not None:
            await _close_within_deadline(producer.stop(), "producer")


async def _close_within_deadline(closing: Awaitable[None], what: str) -> None:
    """Close a Kafka client, but not for longer than a broker deadline: closing one whose
    broker died can wait without end (in the fault suite a relay went silent for good
    after a kill -9 of the embedded broker, while dropping its clients). A client left behind
    holds a socket until the process ends; a relay that stops publishing loses no data
    but delays every event."""
    try:
        async with asyncio.timeout(_BROKER_DEADLINE_SECONDS):
            await closing
    except TimeoutError:
        log.warning("a Kafka client did not close in time; left behind", extra={"client": what})
    except Exception:
        log.debug("closing a Kafka client failed", extra={"client": what}, exc_info=True)
