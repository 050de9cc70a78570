"""The review pack's timer and deliveries, run by metrics' worker until cancelled.

Timer: every ``FUNNEL_METRICS_REVIEW_SCAN_INTERVAL_SECONDS`` the worker makes sure every
week up to the next pack due has a row (``review_weeks``), then claims the newest week
due with ``FOR UPDATE SKIP LOCKED`` and, in the same transaction, prepares its pack from
the figures of that moment, stores it, marks the week sent and queues its deliveries.
However many replicas scan, and across restarts, a week's pack is prepared once. A week
whose time passed while no worker ran is found due at the next scan and sent then,
marked late; when several weeks are due at once, only the newest is sent (the older
would say the same, from the same figures) and the others are marked skipped.

Deliveries: the email (to the whole list) and the Slack message of each pack are a
durable queue, leased as handoff's notifications are, retried with backoff when a
failure may pass and parked with the reason when it will not
(:mod:`funnel_common.delivery`). They are rendered when sent, with the example notes
read then.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import asyncpg
import httpx
from opentelemetry import trace
from prometheus_client import Counter

from funnel_common.db import is_unavailable
from funnel_common.delivery import Outcome, post_json, send_email
from funnel_common.periods import parse_week
from funnel_common.retry import Backoff
from funnel_common.telemetry import PlatformMetrics, work_span
from funnel_common.types import utc_now
from metrics import review, review_messages, review_packs, review_store
from metrics.review import ReviewPack, Schedule
from metrics.review_store import Channel
from metrics.settings import MetricsSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

CHANNELS: tuple[Channel, ...] = ("email", "slack")
_BATCH = 10


def schedule_of(settings: MetricsSettings) -> Schedule:
    return Schedule(
        weekday=settings.review_weekday,
        clock=settings.review_time,
        timezone=settings.common.reporting_timezone,
    )


def channels_of(settings: MetricsSettings) -> list[Channel]:
    """Where packs go: nothing configured, nothing queued (and nothing tried)."""
    found: list[Channel] = []
    if settings.review_email_to:
        found.append("email")
    if settings.review_slack_webhook_url is not None:
        found.append("slack")
    return found


class ReviewWorker:
    """Prepares each week's pack when it is due and delivers it."""

    def __init__(
        self, pool: asyncpg.Pool, settings: MetricsSettings, metrics: PlatformMetrics
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._schedule = schedule_of(settings)
        self._backoff = Backoff(
            first=settings.review_retry_seconds,
            cap=max(settings.review_retry_seconds, settings.review_retry_max_seconds),
        )
        self._outcomes = Counter(
            "funnel_review_deliveries_total",
            "Review pack delivery attempts by channel and outcome (delivered, retried, parked).",
            ["channel", "outcome"],
            registry=metrics.registry,
        )
        for channel in CHANNELS:
            for outcome in ("delivered", "retried", "parked"):
                self._outcomes.labels(channel, outcome)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            while True:
                try:
                    await self.fire_due()
                    await self.deliver_due(client)
                except Exception as error:
                    if is_unavailable(error):
                        log.warning("review worker waiting for PostgreSQL")
                    else:
                        log.exception("review pass failed")
                await asyncio.sleep(self._settings.review_scan_interval_seconds)

    async def fire_due(self, now: datetime | None = None) -> str | None:
        """Schedule the weeks up to the next pack due, then prepare the newest week due
        (once, whichever replica claims it). The week sent, or None."""
        now = now or utc_now()
        async with self._pool.acquire() as connection, connection.transaction():
            latest = await review_store.latest_week(connection)
            await review_store.schedule(
                connection, review.weeks_to_schedule(latest, now, self._schedule)
            )
        async with self._pool.acquire() as connection, connection.transaction():
            claimed = await review_store.claim_due(connection, now)
            if claimed is None:
                return None
            week: str = claimed["week"]
            due_at: datetime = claimed["due_at"]
            if await review_store.newer_due(connection, due_at, now):
                await review_store.skip(connection, week)
                log.info("review week skipped: a later one is due", extra={"week": week})
                return None
            with tracer.start_as_current_span("review prepare", attributes={"week": week}):
                await review_store.skip_older(connection, due_at)
                late_after = timedelta(minutes=self._settings.review_late_after_minutes)
                pack = await review_packs.prepare(
                    connection,
                    self._settings,
                    week=parse_week(week),
                    due_at=due_at,
                    now=now,
                    late=review.is_late(due_at, now, late_after),
                )
                await review_store.save_pack(connection, pack, prepared_at=now)
                await review_store.enqueue_deliveries(connection, week, channels_of(self._settings))
        log.info("review pack prepared", extra={"week": week, "late": pack.late})
        return week

    async def deliver_due(self, client: httpx.AsyncClient, now: datetime | None = None) -> int:
        """One pass over the deliveries due: lease, send, record. Returns rows handled."""
        lease = timedelta(seconds=2 * max(self._settings.smtp_timeout_seconds, 10.0) + 1)
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await review_store.claim_deliveries(
                connection, now=now or utc_now(), lease=lease, limit=_BATCH
            )
        with work_span(tracer, "review deliver", rows):
            for row in rows:
                outcome = await self._deliver(client, row)
                async with self._pool.acquire() as connection, connection.transaction():
                    await self._record(connection, row, outcome)
        return len(rows)

    async def _deliver(self, client: httpx.AsyncClient, row: asyncpg.Record) -> Outcome:
        settings = self._settings
        try:
            async with self._pool.acquire() as connection:
                pack = await review_store.pack_of(connection, parse_week(row["week"]))
                if pack is None:
                    return Outcome("the week's pack is gone", park=True)
                notes = await review_packs.notes_for(connection, pack, settings)
            if row["channel"] == "email":
                return await self._email(pack, notes)
            return await self._slack(client, pack, notes)
        except Exception as error:
            if is_unavailable(error):
                raise
            # A bug in rendering one pack must not stop the other deliveries.
            log.exception("review delivery crashed", extra={"delivery_id": row["id"]})
            return Outcome(type(error).__name__)

    async def _email(self, pack: ReviewPack, notes: dict[str, list[str]]) -> Outcome:
        settings = self._settings
        if settings.smtp is None:
            return Outcome("email is not configured (FUNNEL_METRICS_SMTP_HOST)", park=True)
        if not settings.review_email_to:
            return Outcome("no recipients (FUNNEL_METRICS_REVIEW_EMAIL_TO)", park=True)
        message = review_messages.email_message(
            pack,
            notes,
            public_url=settings.public_url,
            sender=settings.email_from,
            to=[str(address) for address in settings.review_email_to],
        )
        return await send_email(message, settings.smtp)

    async def _slack(
        self, client: httpx.AsyncClient, pack: ReviewPack, notes: dict[str, list[str]]
    ) -> Outcome:
        url = self._settings.review_slack_webhook_url
        if url is None:
            return Outcome(
                "Slack is not configured (FUNNEL_METRICS_REVIEW_SLACK_WEBHOOK_URL)", park=True
            )
        body = review_messages.slack_body(pack, notes, public_url=self._settings.public_url)
        content = json.dumps(body, sort_keys=True).encode()
        return await post_json(client, url.get_secret_value(), content, {})

    async def _record(
        self, connection: asyncpg.Connection, row: asyncpg.Record, outcome: Outcome
    ) -> None:
        channel = row["channel"]
        if outcome.error is None:
            await review_store.mark_delivered(connection, row["id"])
            self._outcomes.labels(channel, "delivered").inc()
            return
        retry_at = None
        reason = outcome.error
        if not outcome.park:
            if row["attempts"] < self._settings.review_max_attempts:
                retry_at = utc_now() + timedelta(seconds=self._backoff.delay(row["attempts"]))
            else:
                reason = f"gave up after {row['attempts']} attempts: {outcome.error}"
        await review_store.mark_failed(connection, row["id"], error=reason, retry_at=retry_at)
        self._outcomes.labels(channel, "retried" if retry_at else "parked").inc()
        # Neither the addresses nor the webhook URL (a secret) are logged.
        log.warning(
            "review delivery parked" if retry_at is None else "review delivery failed",
            extra={"week": row["week"], "channel": channel, "attempts": row["attempts"],
                   "error": reason},
        )  # fmt: skip
