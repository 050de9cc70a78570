"""Outbound webhooks: what a team hears about its handoffs, and the worker that delivers it.

Notification rows are written in the transaction of the change they report (the
durable queue); :class:`Notifier` leases due rows, posts them and records the outcome,
retrying with capped exponential backoff. A receiver that is down delays only its own
messages; the handoff itself never waits for it.

Each request is signed: ``X-Funnel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` with the ``FUNNEL_HANDOFF_WEBHOOK_SECRET``. Bodies carry ids, never a
lead's personal data.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import httpx
from pydantic import SecretStr

from funnel_common.db import is_unavailable
from funnel_common.types import utc_now
from handoff import store
from handoff.models import NotificationKind, Team

if TYPE_CHECKING:
    from handoff.models import Handoff
    from handoff.settings import HandoffSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Funnel-Signature"

_HEADLINES: dict[NotificationKind, str] = {
    "assigned": "New lead assigned",
    "at_risk": "Lead SLA at risk",
    "breached": "Lead SLA breached",
    "escalated": "Lead escalated to the manager",
}


def _recipients(kind: NotificationKind, rep_id: str | None, manager_id: str | None) -> list[str]:
    rep = [f"rep:{rep_id}"] if rep_id else []
    manager = [f"manager:{manager_id}"] if manager_id else []
    if kind == "assigned":
        return rep
    if kind == "escalated":
        return manager
    return rep + manager


def notifications_for(
    team: Team, handoff: Handoff, kind: NotificationKind, *, now: datetime
) -> list[tuple[UUID, str, str, dict[str, Any]]]:
    """The queue rows for one happening: one per team webhook subscribed to ``kind``."""
    due_at = handoff.due_at.isoformat() if handoff.due_at else None
    body: dict[str, Any] = {
        "type": f"handoff.{kind}",
        "handoff_id": str(handoff.handoff_id),
        "lead_id": str(handoff.lead_id),
        "team": handoff.team_id,
        "rep_id": handoff.rep_id,
        "manager_id": team.manager_id,
        "to": _recipients(kind, handoff.rep_id, team.manager_id),
        "status": handoff.status,
        "policy": handoff.policy_name,
        "due_at": due_at,
        "occurred_at": now.isoformat(),
    }
    rows: list[tuple[UUID, str, str, dict[str, Any]]] = []
    for hook in team.webhooks:
        if kind not in hook.events:
            continue
        if hook.format == "slack":
            who = ", ".join(body["to"]) or f"team {handoff.team_id}"
            due = f", due {due_at}" if due_at else ""
            payload: dict[str, Any] = {
                "text": f"{_HEADLINES[kind]}: handoff {handoff.handoff_id} "
                f"(team {handoff.team_id}) for {who}{due}"
            }
        else:
            payload = body
        rows.append((handoff.handoff_id, kind, str(hook.url), payload))
    return rows


def with_inbox_link(
    payload: dict[str, Any], handoff_id: UUID, settings: HandoffSettings
) -> dict[str, Any]:
    """The payload with a link to the handoff in the rep inbox, when handoff knows its URL."""
    if not settings.public_url:
        return payload
    link = f"{settings.public_url.rstrip('/')}/inbox/handoffs/{handoff_id}"
    if "text" in payload and "handoff_id" not in payload:  # Slack: a link in the text
        return {**payload, "text": f"{payload['text']} <{link}|open in the inbox>"}
    return {**payload, "inbox_url": link}


def sign(secret: SecretStr, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.get_secret_value().encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: SecretStr, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class Notifier:
    """Delivers the notification queue until cancelled."""

    def __init__(self, pool: asyncpg.Pool, settings: HandoffSettings) -> None:
        self._pool = pool
        self._settings = settings

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_seconds, follow_redirects=False
        ) as client:
            while True:
                try:
                    delivered = await self.deliver_due(client)
                except Exception as error:
                    if not is_unavailable(error):
                        log.exception("notifier pass failed")
                    delivered = 0
                if delivered == 0:
                    await asyncio.sleep(self._settings.webhook_poll_interval_seconds)

    def _retry_at(self, attempts: int, now: datetime) -> datetime | None:
        if attempts >= self._settings.webhook_max_attempts:
            return None
        delay = min(
            self._settings.webhook_backoff_seconds * 2 ** (attempts - 1),
            self._settings.webhook_backoff_max_seconds,
        )
        return now + timedelta(seconds=delay)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """One pass: lease due rows, post them, record outcomes. Returns rows handled."""
        if not self._settings.webhooks_can_be_signed:
            log.error(
                "webhook notifications held: set FUNNEL_HANDOFF_WEBHOOK_SECRET to a real secret"
            )
            return 0
        lease = timedelta(seconds=self._settings.webhook_timeout_seconds * 2 + 1)
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await store.claim_notifications(
                connection, now=utc_now(), lease=lease, limit=self._settings.webhook_batch_size
            )
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._post(client, row) for row in rows))
        async with self._pool.acquire() as connection, connection.transaction():
            for row, error in zip(rows, outcomes, strict=True):
                if error is None:
                    await store.mark_delivered(connection, row["id"])
                    continue
                retry_at = self._retry_at(row["attempts"], utc_now())
                await store.mark_attempt_failed(
                    connection, row["id"], error=error, retry_at=retry_at
                )
                log.warning(
                    "webhook delivery failed",
                    extra={
                        "notification_id": row["id"],
                        "kind": row["kind"],
                        "attempts": row["attempts"],
                        "gave_up": retry_at is None,
                        "error": error,
                    },
                )
        return len(rows)

    async def _post(self, client: httpx.AsyncClient, row: asyncpg.Record) -> str | None:
        payload = with_inbox_link(json.loads(row["body"]), row["handoff_id"], self._settings)
        body = json.dumps(payload, sort_keys=True).encode()
        timestamp = int(utc_now().timestamp())
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self._settings.webhook_secret, body, timestamp),
            "X-Funnel-Delivery": str(row["id"]),
            "X-Funnel-Event": f"handoff.{row['kind']}",
        }
        try:
            answer = await client.post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as error:
            return type(error).__name__
        if answer.is_success:
            return None
        return f"HTTP {answer.status_code}"
