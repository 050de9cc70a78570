"""Consumer runner: a consumer-group member with an idempotent inbox and a DLQ.

For each record: decode it (either mode of the CloudEvents Kafka binding; an
undecodable record goes to ``funnel.dlq``), find its handler (events nobody here handles
are skipped), then in ONE transaction record the event id in the inbox and apply the
handler. A redelivered event finds its id and
changes nothing. Offsets are committed only after the transaction. Consecutive records
of one fetch share that transaction (one commit for many events); if it fails, they are
applied again one by one, in order.

Failures are told apart: PostgreSQL being unavailable is waited out without limit
(the event is fine, the database is not); an error raised by the handler is retried a
bounded number of times, then the event is parked in ``funnel.dlq`` with the error and
the consumer moves on.

Parking writes a dead letter to this service's outbox (its relay publishes it): it is
kept in PostgreSQL before the record's offset is committed, and a broker that loses
its records (the embedded one) gets it again like any other event.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from opentelemetry import propagate, trace
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_CONSUMER_GROUP_NAME,
)

from funnel_common import outbox
from funnel_common.db import is_unavailable
from funnel_common.events import (
    Envelope,
    EventDecodeError,
    RecordDeadLettered,
    decode_record,
)
from funnel_common.inbox import InboxRow, record_inbox, record_inbox_many
from funnel_common.kafka import TOPIC_CONFIGS, new_consumer
from funnel_common.retry import Backoff
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics, delivered_attributes, messaging_attributes

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[asyncpg.Connection, Any], Awaitable[None]]
"""Applies one event using the given connection, inside the runner's transaction."""

_MAX_BACKOFF_SECONDS = 5.0

_Handled = tuple[ConsumerRecord[bytes, bytes], Envelope, Handler]


class ConsumerRunner:
    """Consumes ``topics`` as ``group_id`` and applies ``handlers`` until cancelled."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: CommonSettings,
        group_id: str,
        topics: list[str],
        handlers: Mapping[type[Envelope], Handler],
        metrics: PlatformMetrics,
    ) -> None:
        self._pool = pool
        self._settings = settings
        # The topic prefix namespaces a deployment; its groups belong to it too.
        self._group_id = settings.kafka_topic_prefix + group_id
        self._topics = [settings.topic(name) for name in topics]
        # Where a tombstone means "drop this key" (funnel.people after an erasure);
        # anywhere else a record without a value is junk, dead-lettered like any.
        self._compacted = {
            settings.topic(name)
            for name, config in TOPIC_CONFIGS.items()
            if config.get("cleanup.policy") == "compact"
        }
        self._handlers = handlers
        self._metrics = metrics
        self.assigned = False
        # Every outcome series exists from the start, so the first dead letter is an
        # increase from 0 that rate() and increase() can see.
        for topic in self._topics:
            for outcome in ("applied", "duplicate", "dead_lettered"):
                metrics.events_consumed.labels(self._group_id, topic, outcome)

    async def run(self) -> None:
        """Consume forever; broker outages are waited out with capped, jittered backoff."""
        backoff = Backoff(first=0.1, cap=_MAX_BACKOFF_SECONDS)
        while True:
            consumer = new_consumer(self._settings, group_id=self._group_id, topics=self._topics)
            try:
                await consumer.start()
                backoff.reset()
                await self._consume(consumer)
            except KafkaError as error:
                log.warning(
                    "consumer waiting for the broker",
                    extra={"group": self._group_id, "error": type(error).__name__},
                )
            except Exception:
                # Nothing was committed past the failing record: it is redelivered.
                log.exception("consumer failed; restarting", extra={"group": self._group_id})
            finally:
                self.assigned = False
                await _stop_quietly(consumer)
            await backoff.wait()

    async def _consume(self, consumer: Any) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            self.assigned = bool(consumer.assignment())
            if self._settings.kafka_volatile_broker:
                await rewind_if_log_was_reset(consumer)
            await self._measure_lag(consumer)
            if batches:
                # One transaction and one offset commit for the whole fetch: per
                # partition, a fetch of a few records each cost three of each, and the
                # last partition's records waited for the others' (measured: 60-100 ms
                # a cycle at 200 leads/s).
                await self._process_in_order(
                    [record for records in batches.values() for record in records]
                )
                await consumer.commit(
                    {partition: records[-1].offset + 1 for partition, records in batches.items()}
                )

    async def _measure_lag(self, consumer: Any) -> None:
        for partition in consumer.assignment():
            high_water = consumer.highwater(partition)
            if high_water is not None:
                lag = max(0, high_water - await consumer.position(partition))
                self._metrics.consumer_lag.labels(
                    self._group_id, partition.topic, str(partition.partition)
                ).set(lag)

    async def _process_in_order(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Applies a fetch's records (each partition's in order), consecutive handled
        ones together in one transaction (one commit instead of one per event)."""
        run: list[_Handled] = []
        for record in records:
            if record.value is None and record.topic in self._compacted:
                # A tombstone: compaction's instruction to drop a key, not an event. What
                # it stands for travels as an event (funnel.person.erased.v1).
                continue
            try:
                event = decode_record(record.value, record.headers)
            except EventDecodeError as error:
                await self._apply_run(run)
                run = []
                await self._park(record, kind="undecodable", error=str(error))
                continue
            handler = self._handlers.get(type(event))
            if handler is not None:
                run.append((record, event, handler))
        await self._apply_run(run)

    async def _apply_run(self, run: list[_Handled]) -> None:
        while len(run) > 1:
            failed = await self._apply_together(run)
            if failed is None:
                return
            # Rolled back. The events before the failing one are applied again together;
            # the failing one goes on alone with its own retries and DLQ (the failed
            # batch counting as its first attempt); then the rest.
            position, attempts = failed
            await self._apply_run(run[:position])
            record, event, handler = run[position]
            with self._span(record, event):
                await self._apply_with_retries(record, event, handler, failures=attempts)
            run = run[position + 1 :]
        for record, event, handler in run:
            with self._span(record, event):
                await self._apply_with_retries(record, event, handler)

    async def _apply_together(self, run: list[_Handled]) -> tuple[int, int] | None:
        """Applies the run in one transaction: None when it committed, else the position
        of the event that failed and whether that counts as one of its attempts (not
        for PostgreSQL being unavailable, nor for a failure at commit: position 0)."""
        applied: list[bool] = []
        recorded = False
        try:
            async with outbox.transaction(self._pool) as connection:
                # The whole run's inbox rows in one statement: the first of an id is
                # fresh, later ones (and ids already recorded) are duplicates.
                fresh_ids = set(
                    await record_inbox_many(
                        connection, [_inbox_row(record, event) for record, event, _ in run]
                    )
                )
                recorded = True
                for record, event, handler in run:
                    fresh = event.id in fresh_ids
                    fresh_ids.discard(event.id)
                    with self._span(record, event):
                        if fresh:
                            await handler(connection, event)
                    applied.append(fresh)
        except Exception as error:
            log.info(
                "a batch of events failed; applying it again in parts",
                extra={"group": self._group_id, "error": type(error).__name__},
            )
            if not recorded or len(applied) == len(run) or is_unavailable(error):
                return 0, 0
            return len(applied), 1
        for (record, _, _), fresh in zip(run, applied, strict=True):
            self._count(record, fresh)
        return None

    def _span(self, record: ConsumerRecord[bytes, bytes], event: Envelope) -> Any:
        # A header's value may be null on the wire; one such header used to crash the
        # loop on every redelivery, wedging the partition behind a valid event.
        context = propagate.extract(
            {k: v.decode(errors="replace") for k, v in record.headers if v is not None}
        )
        return tracer.start_as_current_span(
            f"{record.topic} process",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                **messaging_attributes(record.topic, event.id, operation="process"),
                **delivered_attributes(record.partition, record.offset),
                MESSAGING_CONSUMER_GROUP_NAME: self._group_id,
            },
        )

    def _count(self, record: ConsumerRecord[bytes, bytes], applied: bool) -> None:
        outcome = "applied" if applied else "duplicate"
        self._metrics.events_consumed.labels(self._group_id, record.topic, outcome).inc()
        if applied:
            self._metrics.event_lag.labels(self._group_id).observe(
                max(0.0, time.time() - record.timestamp / 1000)
            )

    async def _apply_with_retries(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Envelope,
        handler: Handler,
        *,
        failures: int = 0,
    ) -> None:
        outage_backoff = Backoff(first=0.1, cap=_MAX_BACKOFF_SECONDS)
        retry_backoff = Backoff(
            first=self._settings.consumer_retry_backoff_seconds,
            cap=max(self._settings.consumer_retry_backoff_seconds, _MAX_BACKOFF_SECONDS),
        )
        while True:
            try:
                applied = await self._apply(record, event, handler)
            except Exception as error:
                if is_unavailable(error):
                    log.warning("consumer waiting for PostgreSQL", extra={"group": self._group_id})
                    await outage_backoff.wait()
                    continue
                failures += 1
                if failures >= self._settings.consumer_max_attempts:
                    log.error(
                        "event parked in the DLQ after repeated failures",
                        extra={
                            "group": self._group_id,
                            "event_type": event.type,
                            "event_id": str(event.id),
                        },
                        exc_info=True,
                    )
                    await self._park(record, kind="handler_failed", error=repr(error))
                    return
                await asyncio.sleep(retry_backoff.delay(failures))
                continue
            self._count(record, applied)
            return

    async def _apply(
        self, record: ConsumerRecord[bytes, bytes], event: Envelope, handler: Handler
    ) -> bool:
        # A handler may enqueue events of its own (handoff does): the unit of work wakes
        # the relay after the commit.
        async with outbox.transaction(self._pool) as connection:
            return await self._record_and_apply(connection, record, event, handler)

    async def _record_and_apply(
        self,
        connection: asyncpg.Connection,
        record: ConsumerRecord[bytes, bytes],
        event: Envelope,
        handler: Handler,
    ) -> bool:
        fresh = await record_inbox(connection, _inbox_row(record, event))
        if fresh:
            await handler(connection, event)
        return fresh

    async def _park(
        self,
        record: ConsumerRecord[bytes, bytes],
        *,
        kind: Literal["undecodable", "handler_failed"],
        error: str,
    ) -> None:
        """Keep the record as a dead letter in this service's outbox (its relay publishes
        it to ``funnel.dlq``); waits out PostgreSQL being down, so the offset is committed
        only once the dead letter is stored."""
        letter = dead_letter(record, group=self._group_id, kind=kind, error=error)
        backoff = 0.1
        while True:
            try:
                async with outbox.transaction(self._pool) as connection:
                    await outbox.enqueue(connection, letter)
            except Exception as failure:
                if not is_unavailable(failure):
                    raise
                log.warning("consumer waiting for PostgreSQL", extra={"group": self._group_id})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            break
        self._metrics.events_consumed.labels(self._group_id, record.topic, "dead_lettered").inc()


def dead_letter(
    record: ConsumerRecord[bytes, bytes],
    *,
    group: str,
    kind: Literal["undecodable", "handler_failed"],
    error: str,
) -> RecordDeadLettered:
    """The dead letter of ``record`` for ``group``. Its id is derived from the record
    (where it was, when, what it held), so parking one record again after a crash, before
    its offset was committed, is the same event: the outbox keeps it once."""
    value = record.value or b""
    try:
        original = {"text": value.decode()}
    except UnicodeDecodeError:
        original = {"base64": base64.b64encode(value).decode()}
    where = (group, record.topic, record.partition, record.offset, record.timestamp)
    fingerprint = "|".join(map(str, where)) + "|" + hashlib.sha256(value).hexdigest()
    letter = RecordDeadLettered.new(
        source=group[:80] or "consumer",
        subject=f"{record.partition}/{record.offset}",
        data={
            "kind": kind,
            "error": error[:4000],
            "group": group,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "original": original,
            "headers": {
                name: (header or b"").decode(errors="replace") for name, header in record.headers
            },
        },
    )
    return letter.model_copy(update={"id": uuid.uuid5(uuid.NAMESPACE_URL, fingerprint)})


def _inbox_row(record: ConsumerRecord[bytes, bytes], event: Envelope) -> InboxRow:
    return (event.id, event.type, record.topic, record.partition, record.offset)


async def rewind_if_log_was_reset(consumer: Any) -> None:
    """Re-read a partition whose log end fell below our position.

    On a healthy broker a partition's end offset never falls below a consumer's
    position; when it does, the broker lost its records (the embedded broker keeps them
    in memory) and the relays are publishing them again from their outboxes. Re-reading
    from the start is safe: the inbox drops what was already applied.
    """
    for partition in consumer.assignment():
        high_water = consumer.highwater(partition)
        if high_water is not None and high_water < await consumer.position(partition):
            log.warning("partition log was reset; re-reading it", extra={"topic": partition.topic})
            await consumer.seek_to_beginning(partition)


async def _stop_quietly(client: Any) -> None:
    try:
        await client.stop()
    except Exception:
        log.debug("kafka client stop failed", exc_info=True)
