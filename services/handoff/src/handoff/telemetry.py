"""Operational gauges for /metrics, read from PostgreSQL on each scrape.

Labels are bounded: a team (configured by admins) and a handoff status. The funnel
figures themselves (handoffs by outcome, breaches, time to accept) are the metrics
service's, computed from our events.
"""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from funnel_common.service import ExtraMetrics, Runtime
from funnel_common.types import utc_now
from handoff import store
from handoff.notifications import CHANNELS
from handoff.settings import HandoffSettings


def renderer(settings: HandoffSettings) -> ExtraMetrics:
    async def render(runtime: Runtime) -> bytes:
        registry = CollectorRegistry()
        open_handoffs = Gauge(
            "funnel_handoff_open",
            "Open handoffs by team and status (queued = waiting for an eligible rep).",
            ["team", "status"],
            registry=registry,
        )
        due_soon = Gauge(
            "funnel_handoff_due_soon",
            "Assigned handoffs due within the due-soon window (or overdue), by team.",
            ["team"],
            registry=registry,
        )
        pending = Gauge(
            "funnel_handoff_notifications_pending",
            "Notifications (webhooks, Slack, email) waiting for delivery.",
            registry=registry,
        )
        parked = Gauge(
            "funnel_handoff_notifications_parked",
            "Notifications parked for good (refused, bounced, attempts used up), by channel.",
            ["channel"],
            registry=registry,
        )
        async with runtime.pool.acquire() as connection:
            for team, status, count in await store.open_handoffs_by_team(connection):
                open_handoffs.labels(team, status).set(count)
            window = timedelta(seconds=settings.due_soon_seconds)
            for team, count in await store.due_soon_by_team(
                connection, now=utc_now(), within=window
            ):
                due_soon.labels(team).set(count)
            pending.set(await store.pending_notifications(connection))
            counts = dict(await store.parked_notifications(connection))
            for channel in CHANNELS:
                parked.labels(channel).set(counts.get(channel, 0))
        return generate_latest(registry)

    return render
