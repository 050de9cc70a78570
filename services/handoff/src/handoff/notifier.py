"""The notifier: delivers the notification queue (webhooks, Slack, email) until cancelled.

Rows are written in the transaction of the change they report (the durable queue, see
notifications.py). Each pass leases due rows (``FOR UPDATE SKIP LOCKED``, so replicas
share the work), delivers them concurrently and records each outcome:

- delivered;
- a failure that may pass (a timeout, a refused connection, HTTP 408/425/429/5xx, an
  SMTP 4xx): tried again after a backoff that doubles, with jitter
  (:class:`funnel_common.retry.Backoff`), until the attempts are used up;
- a refusal that will not pass (an HTTP 4xx, a redirect, an address the mail server
  bounces with 5xx, an email row this worker has no SMTP server for): parked at once
  with its reason, never retried. Email rows are queued only where a server is set
  (``HandoffSettings.channels``), so the last means the host was unset since they were
  queued, or the web's settings differ from the worker's: worth the warning it logs.

A parked row keeps its reason in ``last_error``; ``funnel_handoff_notifications_parked``
counts them by channel and ``funnel_handoff_notifications_total`` counts outcomes.

Webhooks (JSON and Slack) are signed with the Standard Webhooks scheme (headers
``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with
``FUNNEL_HANDOFF_WEBHOOK_SECRET``: a receiver verifies them with any Standard Webhooks
library. ``webhook-id`` stays the same across retries, for the receiver's dedupe. The
transport itself (SMTP, HTTP, and how an answer is classified) is
:mod:`funnel_common.delivery`, which metrics' review pack uses too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from funnel_common.db import is_unavailable
from funnel_common.delivery import Outcome, post_json, send_email
from funnel_common.retry import Backoff
from funnel_common.settings import STANDARD_WEBHOOKS_PREFIX
from funnel_common.telemetry import PlatformMetrics, work_span
from funnel_common.types import utc_now
from handoff import store
from handoff.notifications import (
    CHANNELS,
    email_message,
    inbox_link,
    slack_body,
    webhook_body,
)
from handoff.settings import HandoffSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def standard_webhook(secret: SecretStr) -> Webhook:
    """The signer for ``secret``: a ``whsec_`` secret is base64 (the Standard Webhooks
    format), any other is used as its UTF-8 bytes (receivers pass those bytes)."""
    value = secret.get_secret_value()
    if value.startswith(STANDARD_WEBHOOKS_PREFIX):
        return Webhook(value)
    return Webhook(value.encode())


class Notifier:
    """Delivers the notification queue until cancelled."""

    def __init__(
        self, pool: asyncpg.Pool, settings: HandoffSettings, metrics: PlatformMetrics
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._signer = standard_webhook(settings.webhook_secret)
        self._smtp = settings.smtp
        self._backoff = Backoff(
            first=settings.webhook_backoff_seconds,
            cap=max(settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds),
        )
        self._outcomes = Counter(
            "funnel_handoff_notifications_total",
            "Notification delivery attempts by channel and outcome (delivered, retried, parked).",
            ["channel", "outcome"],
            registry=metrics.registry,
        )
        for channel in CHANNELS:
            for outcome in ("delivered", "retried", "parked"):
                self._outcomes.labels(channel, outcome)

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_seconds, follow_redirects=False
        ) as client:
            while True:
                try:
                    handled = await self.deliver_due(client)
                except Exception as error:
                    if not is_unavailable(error):
                        log.exception("notifier pass failed")
                    handled = 0
                if handled == 0:
                    await asyncio.sleep(self._settings.webhook_poll_interval_seconds)

    def _retry_at(self, attempts: int, now: datetime) -> datetime | None:
        if attempts >= self._settings.webhook_max_attempts:
            return None
        return now + timedelta(seconds=self._backoff.delay(attempts))

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """One pass: lease due rows, deliver them, record outcomes. Returns rows handled."""
        # A lease outlives the slowest delivery, so no two replicas send the same row.
        longest = max(self._settings.webhook_timeout_seconds, self._settings.smtp_timeout_seconds)
        lease = timedelta(seconds=longest * 2 + 1)
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await store.claim_notifications(
                connection, now=utc_now(), lease=lease, limit=self._settings.webhook_batch_size
            )
        if not rows:
            return 0
        with work_span(tracer, "notify", rows):
            outcomes = await asyncio.gather(*(self._deliver(client, row) for row in rows))
            async with self._pool.acquire() as connection, connection.transaction():
                for row, outcome in zip(rows, outcomes, strict=True):
                    await self._record(connection, row, outcome)
        return len(rows)

    async def _record(
        self, connection: asyncpg.Connection, row: asyncpg.Record, outcome: Outcome
    ) -> None:
        if outcome.error is None:
            await store.mark_delivered(connection, row["id"])
            self._outcomes.labels(row["channel"], "delivered").inc()
            return
        retry_at = None if outcome.park else self._retry_at(row["attempts"], utc_now())
        reason = outcome.error
        if retry_at is None and not outcome.park:
            reason = f"gave up after {row['attempts']} attempts: {outcome.error}"
        await store.mark_attempt_failed(connection, row["id"], error=reason, retry_at=retry_at)
        self._outcomes.labels(row["channel"], "retried" if retry_at else "parked").inc()
        # The target (a URL with its token, an address) is left out: secrets, personal data.
        log.warning(
            "notification parked" if retry_at is None else "notification delivery failed",
            extra={
                "notification_id": row["id"],
                "channel": row["channel"],
                "kind": row["kind"],
                "attempts": row["attempts"],
                "error": reason,
            },
        )

    async def _deliver(self, client: httpx.AsyncClient, row: asyncpg.Record) -> Outcome:
        facts: dict[str, Any] = json.loads(row["body"])
        link = inbox_link(self._settings.public_url, row["handoff_id"])
        try:
            if row["channel"] == "email":
                return await self._email(facts, link, to=row["target"])
            body = (
                slack_body(facts, link) if row["channel"] == "slack" else webhook_body(facts, link)
            )
            return await self._post(client, row["id"], row["target"], body)
        except Exception as error:
            # A bug in rendering or delivering one row must not stop the others.
            log.exception("notification delivery crashed", extra={"notification_id": row["id"]})
            return Outcome(type(error).__name__)

    async def _post(
        self, client: httpx.AsyncClient, notification_id: int, url: str, body: dict[str, Any]
    ) -> Outcome:
        content = json.dumps(body, sort_keys=True).encode()
        message_id = f"ntf_{notification_id}"
        sent_at = utc_now()
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._signer.sign(message_id, sent_at, content),
        }
        return await post_json(client, url, content, headers)

    async def _email(self, facts: dict[str, Any], link: str, *, to: str) -> Outcome:
        if self._smtp is None:
            return Outcome("email is not configured (FUNNEL_HANDOFF_SMTP_HOST)", park=True)
        message = email_message(facts, link, sender=self._settings.email_from, to=to)
        return await send_email(message, self._smtp)
