"""The SLA timer: deadlines are rows, scanned every ``scan_interval_seconds``.

Each pass claims due rows with ``FOR UPDATE SKIP LOCKED`` and changes them in the same
transaction as their events, so a deadline fires once however many replicas scan, and a
replica that dies mid-pass rolls back and leaves the row for the next scan. Nothing is
held in memory: after a restart, whatever fell due meanwhile fires on the first pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from opentelemetry import trace

from funnel_common import outbox
from funnel_common.db import is_unavailable
from funnel_common.telemetry import work_span
from funnel_common.types import utc_now
from handoff import store, timers
from handoff.models import Handoff
from handoff.settings import HandoffSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


@dataclass
class ScanResult:
    at_risk: int = 0
    breached: int = 0
    assigned_from_queue: int = 0


async def _each(
    connection: asyncpg.Connection,
    handoffs: list[Handoff],
    step: Callable[[Handoff], Awaitable[object]],
) -> int:
    """Apply ``step`` to each row in its own savepoint: one bad row does not stall the rest."""
    done = 0
    for handoff in handoffs:
        try:
            async with connection.transaction():
                outcome = await step(handoff)
        except Exception as error:
            if is_unavailable(error):
                raise
            log.exception("deadline step failed", extra={"handoff_id": str(handoff.handoff_id)})
            continue
        done += outcome is not False
    return done


async def scan_once(
    pool: asyncpg.Pool, settings: HandoffSettings, *, now: datetime | None = None
) -> ScanResult:
    """One pass over at-risk and breach deadlines and the team queues.

    Each step is a unit of work of its own (``outbox.transaction``): it commits, then
    wakes the outbox relay. Without ``now``, each step reads the clock when it starts:
    under load the at-risk step takes a good part of an interval, and a deadline that
    falls due meanwhile is claimed at once.
    """
    limit = settings.scan_batch_size
    result = ScanResult()
    async with outbox.transaction(pool) as connection:
        at_risk_now = now or utc_now()
        rows = await store.claim_at_risk(connection, now=at_risk_now, limit=limit)
        with work_span(tracer, "sla at_risk", rows):
            result.at_risk = await _each(
                connection, rows, lambda h: timers.fire_at_risk(connection, h, now=at_risk_now)
            )
    async with outbox.transaction(pool) as connection:
        breach_now = now or utc_now()
        rows = await store.claim_breached(connection, now=breach_now, limit=limit)
        with work_span(tracer, "sla breach", rows):
            result.breached = await _each(
                connection, rows, lambda h: timers.fire_breach(connection, h, now=breach_now)
            )
    async with outbox.transaction(pool) as connection:
        queue_now = now or utc_now()
        rows = await store.claim_queued(connection, limit=limit)
        with work_span(tracer, "sla queue", rows):
            result.assigned_from_queue = await _each(
                connection, rows, lambda h: timers.drain_queue(connection, h, now=queue_now)
            )
    return result


async def run_scanner(pool: asyncpg.Pool, settings: HandoffSettings) -> None:
    """Scan until cancelled, one pass starting every interval; outages are waited out."""
    while True:
        started = time.monotonic()
        try:
            await scan_once(pool, settings)
        except Exception as error:
            if is_unavailable(error):
                log.warning("SLA scanner waiting for PostgreSQL")
            else:
                log.exception("SLA scan failed")
        # The pass's own time counts against the interval: a pause of a whole interval
        # after a busy pass let breaches wait for it and for the pass, not one interval.
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(0.0, settings.scan_interval_seconds - elapsed))
