"""lead-intake alone, in-process, against the session PostgreSQL and broker."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest

from funnel_common import personal
from funnel_common.events import (
    PEOPLE_TOPIC,
    Envelope,
    LeadCapturedV2,
    LeadQualifiedV2,
    PersonalData,
    PersonKeyIssued,
    decode_event,
)
from funnel_common.settings import CommonSettings
from funnel_common.signing import SIGNATURE_HEADER, sign
from lead_intake import worker as intake_worker
from lead_intake.settings import IntakeSettings
from lead_intake.web import create_app
from tests.helpers import eventually
from tests.integration.kafka_helpers import read_topic
from tests.platform import serving

CRM_SECRET = "test-crm-secret"
BILLING_SECRET = "test-billing-secret"
IMPORT_SECRET = "test-import-secret"

IntakeFactory = Callable[..., Awaitable[httpx.AsyncClient]]


def intake_settings(database_url: str, common: CommonSettings, **overrides: Any) -> IntakeSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "common": common,
        "crm_webhook_secret": CRM_SECRET,
        "billing_webhook_secret": BILLING_SECRET,
        "import_secret": IMPORT_SECRET,
        "min_fill_seconds": 0,
        "rate_limit_per_client": 1000,
    }
    return IntakeSettings(**{**values, **overrides})


@asynccontextmanager
async def running_intake(
    settings: IntakeSettings, *, worker: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """lead-intake's web app (the client reaches it) and, unless told otherwise, its
    worker, whose relay publishes what the web wrote."""
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(
                serving(intake_worker.create_app(settings), "intake-worker")
            )
        yield await stack.enter_async_context(serving(create_app(settings), "intake"))


@pytest.fixture
async def start_intake(database_url: str, topics: CommonSettings) -> AsyncIterator[IntakeFactory]:
    """Starts lead-intake with setting overrides; stopped at the end of the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> httpx.AsyncClient:
            settings = intake_settings(database_url, topics, **overrides)
            return await stack.enter_async_context(running_intake(settings))

        yield start


@pytest.fixture
async def intake(start_intake: IntakeFactory) -> httpx.AsyncClient:
    return await start_intake()


def signed(body: dict[str, Any], secret: str, *, at: int | None = None) -> dict[str, Any]:
    """httpx keyword arguments for a signed webhook post."""
    raw = json.dumps(body).encode()
    timestamp = int(time.time()) if at is None else at
    return {
        "content": raw,
        "headers": {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(secret, timestamp, raw),
        },
    }


def imported(body: dict[str, Any], *, at: int | None = None, **headers: str) -> dict[str, Any]:
    """httpx keyword arguments for a lead post signed with the import secret, as `funnel
    import` sends it: trusted, and answered with the lead's id, status and score (an
    anonymous post gets a receipt only)."""
    kwargs = signed(body, IMPORT_SECRET, at=at)
    kwargs["headers"].update(headers)
    return kwargs


async def events_on(
    settings: CommonSettings, topic: str, *, expect: int, subject: str | None = None
) -> list[Envelope]:
    """The distinct events on ``topic`` (optionally of one subject), in order per subject.

    Publication is at-least-once (the relay may publish an event again), so a copy of an
    event id already seen is dropped here, as every consumer's inbox drops it."""

    async def distinct() -> list[Envelope]:
        records = await read_topic(settings, topic, expect=expect, timeout=2)
        events: dict[UUID, Envelope] = {}
        for record in records:
            if record.value is not None:
                event = decode_event(record.value)
                events.setdefault(event.id, event)
        return list(events.values())

    seen = await eventually(
        distinct, until=lambda events: len(events) >= expect, timeout=15, what=f"{expect} events"
    )
    return [event for event in seen if subject is None or event.subject == subject]


async def personal_of(
    settings: CommonSettings, event: LeadCapturedV2 | LeadQualifiedV2
) -> PersonalData:
    """The sealed personal part of a lead event, opened as handoff opens it: with the
    lead's key that lead-intake announced on ``funnel.people``."""
    lead_id = event.data.lead_id

    async def announced() -> list[PersonKeyIssued]:
        found = await events_on(settings, PEOPLE_TOPIC, expect=1)
        return [e for e in found if isinstance(e, PersonKeyIssued) and e.data.person_id == lead_id]

    [key_event] = await eventually(announced, until=bool, timeout=15, what="the lead's key")
    ring = personal.keyring(settings.personal_data_key)
    key = ring.unwrap(lead_id, personal.wrapped_bytes(key_event.data.wrapped_key))
    sealed = event.data.profile.personal
    assert sealed is not None
    return key.open_model(sealed, PersonalData, "profile")
