"""What an outbox relay does for a broker that loses its records: the embedded Tansu
broker keeps them in memory and starts empty after every restart.

Only for a broker declared volatile (``kafka_volatile_broker``, set by ``funnel dev``
and the tests for Tansu alone; see ``funnel_common.kafka``). Apache Kafka keeps what it
acknowledged, so there the relay builds none of this and asks the broker nothing.

The relay keeps its sent rows (it never prunes them here) and marks them unsent again
when the broker lost them:

- all of them, when the broker is another one than the rows went to: Tansu takes a new
  cluster id at each start, and each outbox remembers the one its rows went to
  (``outbox_broker``). Exact, even for ``funnel.dlq``, which several outboxes write;
- a topic's rows, when the broker holds fewer records of the topic than were sent to it
  (for a volatile broker whose id does not change).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import asyncpg

from funnel_common.kafka import RecordsWatch
from funnel_common.settings import CommonSettings

log = logging.getLogger(__name__)

# How often the relay checks that the broker is the same and still holds what it sent.
WATCH_SECONDS = 1.0

Deadline = Callable[[], contextlib.AbstractAsyncContextManager[object]]
"""A bound on one exchange with the broker (the relay's broker deadline)."""


class LostRecords:
    """One relay's view of what a volatile broker should still hold."""

    def __init__(self, settings: CommonSettings, *, schema: str) -> None:
        self._watch = RecordsWatch(settings)
        self._schema = schema
        self._cluster_id: str | None = None
        # Rows this outbox has marked sent, per topic: counted at (re)connection, then
        # kept up to date as rows are sent, to compare with what the broker holds.
        self._sent: dict[str, int] = {}
        self._last_look = 0.0

    async def republish(self, connection: asyncpg.Connection) -> None:
        """Mark unsent again what the broker no longer holds: everything, when it is
        another broker than the one the rows went to; else the rows of each topic of
        which it holds fewer records than were sent. Remembers the broker's id."""
        cluster_id = await self._watch.cluster_id()
        sent_to = await connection.fetchval("SELECT cluster_id FROM outbox_broker")
        if cluster_id is not None and sent_to is not None and cluster_id != sent_to:
            log.warning(
                "the broker is a new one, without the events sent before; republishing them",
                extra={"schema": self._schema},
            )
            await connection.execute("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL")
        sent = await connection.fetch(
            "SELECT topic, count(*) AS rows FROM outbox WHERE sent_at IS NOT NULL GROUP BY topic"
        )
        self._sent = {row["topic"]: row["rows"] for row in sent}
        for row in sent:
            held = await self._watch.held(row["topic"])
            if held is not None and held < row["rows"]:
                # Publish them again: consumers' inboxes drop what they already applied.
                log.warning(
                    "broker lost published events; republishing them",
                    extra={"topic": row["topic"], "sent": row["rows"], "held": held},
                )
                await connection.execute(
                    "UPDATE outbox SET sent_at = NULL WHERE topic = $1 AND sent_at IS NOT NULL",
                    row["topic"],
                )
                self._sent[row["topic"]] = 0
        if cluster_id is not None:
            await connection.execute(
                """INSERT INTO outbox_broker (cluster_id) VALUES ($1)
                   ON CONFLICT (singleton) DO UPDATE SET cluster_id = excluded.cluster_id""",
                cluster_id,
            )
        self._cluster_id = cluster_id

    async def lost_since(self, deadline: Deadline) -> bool:
        """At most every :data:`WATCH_SECONDS`: is the broker another one, or does it hold
        fewer records than were sent to it? Each question under ``deadline``."""
        if time.monotonic() - self._last_look <= WATCH_SECONDS:
            return False
        self._last_look = time.monotonic()
        async with deadline():
            cluster_id = await self._watch.cluster_id()
        if cluster_id is not None and cluster_id != self._cluster_id:
            return True
        for topic, sent in self._sent.items():
            async with deadline():
                held = await self._watch.held(topic)
            if held is not None and held < sent:
                return True
        return False

    def count_sent(self, topics: Iterable[str]) -> None:
        """Rows just marked sent, by their topics."""
        for topic in topics:
            self._sent[topic] = self._sent.get(topic, 0) + 1

    async def close(self) -> None:
        await self._watch.close()
