"""Driving one handoff service (real PostgreSQL, real broker) the way its users do."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from funnel_common import outbox, personal
from funnel_common.auth import Role
from funnel_common.db import create_pool
from funnel_common.events import (
    LeadQualified,
    LeadQualifiedV2,
    PersonalData,
    PersonKeyIssued,
    SealedProfile,
)
from funnel_common.settings import CommonSettings
from handoff import assignment, tokens
from handoff import worker as handoff_worker
from handoff.scanner import ScanResult, scan_once
from handoff.settings import HandoffSettings
from handoff.sla import ALWAYS
from handoff.web import create_app
from tests.platform import serving

ALWAYS_HOURS = ALWAYS.model_dump(mode="json")["weekly_hours"]


def policy_body(
    minutes: float, *, reassign_up_to: int = 1, at_risk_percent: int = 50
) -> dict[str, Any]:
    return {
        "business_minutes": minutes,
        "at_risk_percent": at_risk_percent,
        "calendar": {"time_zone": "UTC", "weekly_hours": ALWAYS_HOURS},
        "on_breach": {"reassign_up_to": reassign_up_to},
    }


# The tests' settings keep the default key-encryption key: the keys these helpers make
# open in the handoff under test, as lead-intake's would.
KEYRING = personal.keyring(CommonSettings().personal_data_key)
PERSON_KEYS: dict[UUID, personal.PersonKey] = {}
"""Every person key these helpers made, by lead id (lead-intake's ``person_keys``)."""


def sealed_profile(
    lead_id: UUID,
    personal_data: dict[str, Any],
    *,
    company: str | None,
    company_size: int | None,
    country: str | None,
) -> SealedProfile:
    """A profile as lead-intake publishes it: its personal part sealed with the lead's
    own key (kept in :data:`PERSON_KEYS`)."""
    key = PERSON_KEYS.setdefault(lead_id, KEYRING.new_key(lead_id))
    return SealedProfile(
        company=company,
        company_size=company_size,
        country=country,
        personal=key.seal_model(PersonalData.model_validate(personal_data), "profile"),
    )


def key_issued(lead_id: UUID) -> PersonKeyIssued:
    """The announcement of a lead's key on ``funnel.people``."""
    return PersonKeyIssued.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "person_id": lead_id,
            "wrapped_key": personal.wrapped_text(PERSON_KEYS[lead_id]),
        },
    )


def lead_event(
    *,
    company_size: int | None = 10,
    country: str | None = "DE",
    form_type: str | None = None,
    company: str = "Analytical Engines",
    personal_data: dict[str, Any] | None = None,
    attribution: dict[str, Any] | None = None,
) -> LeadQualifiedV2:
    """A qualified lead as lead-intake publishes it (its key: :func:`key_issued`)."""
    lead_id = uuid4()
    profile = sealed_profile(
        lead_id,
        personal_data or {"email": "ada@example.com"},
        company=company,
        company_size=company_size,
        country=country,
    )
    return LeadQualifiedV2.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "lead_id": lead_id,
            "score": 80,
            "reasons": [{"rule": "company_size", "points": 40}],
            "rules_version": "test",
            "form_type": form_type,
            "attribution": attribution or {"source": "webinar", "campaign": "q4-launch"},
            "profile": profile,
        },
    )


def legacy_lead_event(*, country: str | None = "DE") -> LeadQualified:
    """A qualified lead as lead-intake published it before personal data was sealed."""
    lead_id = uuid4()
    return LeadQualified.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "lead_id": lead_id,
            "score": 80,
            "reasons": [{"rule": "company_size", "points": 40}],
            "rules_version": "test",
            "attribution": {"source": "webinar", "campaign": "q4-launch"},
            "profile": {
                "email": "ada@example.com",
                "company": "Analytical Engines",
                "company_size": 10,
                "country": country,
            },
        },
    )


def handoff_settings(
    database_url: str, common: CommonSettings, **overrides: Any
) -> HandoffSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "common": common,
        "scan_interval_seconds": 0.05,
        "webhook_poll_interval_seconds": 0.05,
        "webhook_backoff_seconds": 0.1,
        "webhook_backoff_max_seconds": 0.4,
        "webhook_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return HandoffSettings(**values)


@dataclass
class Handoffs:
    """One running handoff app, its database, and helpers acting as its users."""

    client: httpx.AsyncClient
    settings: HandoffSettings
    pool: asyncpg.Pool
    tokens: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    async def token(self, role: Role, subject: str, team: str | None = None) -> str:
        key = (role, subject, team)
        if key not in self.tokens:
            async with outbox.transaction(self.pool) as connection:
                _, self.tokens[key] = await tokens.create_token(
                    connection,
                    self.settings.common.auth_secret,
                    subject=subject,
                    role=role,
                    team=team,
                )
        return self.tokens[key]

    async def auth(self, role: Role, subject: str, team: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {await self.token(role, subject, team)}"}

    async def admin(self) -> dict[str, str]:
        return await self.auth("admin", "root")

    async def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.put(path, json=body, headers=await self.admin())
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def setup_team(
        self,
        team_id: str,
        reps: dict[str, dict[str, Any]],
        *,
        minutes: float = 60,
        reassign_up_to: int = 1,
        countries: list[str] | None = None,
        priority: int = 100,
        webhooks: list[dict[str, Any]] | None = None,
        at_risk_percent: int = 50,
    ) -> None:
        await self.put(
            f"/v1/sla-policies/{team_id}-sla",
            policy_body(minutes, reassign_up_to=reassign_up_to, at_risk_percent=at_risk_percent),
        )
        await self.put(
            f"/v1/teams/{team_id}",
            {
                "manager_id": f"{team_id}-manager",
                "countries": countries or [],
                "priority": priority,
                "sla_policy": f"{team_id}-sla",
                "webhooks": webhooks or [],
            },
        )
        for rep_id, rep in reps.items():
            await self.put(f"/v1/reps/{rep_id}", {"team_id": team_id, "capacity": 5, **rep})

    async def qualify_directly(
        self, event: LeadQualified | LeadQualifiedV2 | None = None, *, now: datetime | None = None
    ) -> UUID:
        """Apply a qualified lead through the handler's flow (no broker), its key kept as
        if heard on ``funnel.people``: the handoff id."""
        event = event or lead_event()
        async with outbox.transaction(self.pool) as connection:
            if (key := PERSON_KEYS.get(event.data.lead_id)) is not None:
                await personal.store_key(connection, key.person_id, key.wrapped)
            created = await assignment.create_from_lead(connection, event, now=now or event.time)
        assert created is not None
        return created.handoff_id

    async def scan(self, now: datetime) -> ScanResult:
        return await scan_once(self.pool, self.settings, now=now)

    async def handoff(self, handoff_id: UUID) -> asyncpg.Record:
        async with self.pool.acquire() as connection:
            row: asyncpg.Record = await connection.fetchrow(
                "SELECT * FROM handoffs WHERE handoff_id = $1", handoff_id
            )
        return row

    async def events(self, event_type: str, handoff_id: UUID | None = None) -> list[dict[str, Any]]:
        """The events handoff committed (its outbox), oldest first."""
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT payload FROM outbox WHERE event_type = $1 ORDER BY seq", event_type
            )
        found = [json.loads(row["payload"]) for row in rows]
        if handoff_id is not None:
            found = [event for event in found if event["subject"] == str(handoff_id)]
        return found


@contextlib.asynccontextmanager
async def running_handoffs(
    settings: HandoffSettings, *, worker: bool = False
) -> AsyncIterator[Handoffs]:
    """handoff's web app and, with ``worker``, its worker (relay, consumer, SLA scanner,
    notifier); without it, tests drive the scanner with their own clock."""
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(
                serving(handoff_worker.create_app(settings), "handoff-worker")
            )
        client = await stack.enter_async_context(serving(create_app(settings), "handoff"))
        pool = await create_pool(settings.database_url, schema="handoff", max_size=20)
        stack.push_async_callback(pool.close)
        yield Handoffs(client=client, settings=settings, pool=pool)
