"""Leads as lead-intake announces them, and a browser-less client signed in to the inbox."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx

from funnel_common import outbox
from funnel_common.events import Envelope, LeadCapturedV2, LeadMerged, LeadQualifiedV2
from handoff.handlers import HANDLERS
from tests.integration.handoff.support import Handoffs, key_issued, sealed_profile

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def a_lead(
    first_name: str,
    company: str,
    *,
    title: str = "CTO",
    phone: str | None = "+49 30 1234567",
    country: str = "DE",
    company_size: int = 200,
    form_id: str = "landing-page",
    form_type: str | None = "demo_request",
    source: str = "webinar",
    campaign: str | None = "q4-launch",
) -> tuple[LeadCapturedV2, LeadQualifiedV2]:
    """A lead's captured and qualified events, as lead-intake publishes them (its key:
    ``key_issued``; :func:`apply` announces it first)."""
    lead_id = uuid4()
    attribution = {"source": source, "campaign": campaign, "utm": {"utm_medium": "email"}}
    personal_data = {
        "email": f"{first_name.lower()}@{company.split()[0].lower()}.example",
        "phone": phone,
        "first_name": first_name,
        "last_name": "Example",
        "title": title,
    }
    profile = sealed_profile(
        lead_id, personal_data, company=company, company_size=company_size, country=country
    )
    captured = LeadCapturedV2.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "lead_id": lead_id,
            "form_id": form_id,
            "attribution": attribution,
            "profile": profile,
        },
    )
    qualified = LeadQualifiedV2.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "lead_id": lead_id,
            "score": 80,
            "reasons": [{"rule": "company_size", "points": 40}, {"rule": "title", "points": 40}],
            "rules_version": "test",
            "form_type": form_type,
            "attribution": attribution,
            "profile": profile,
        },
    )
    return captured, qualified


def a_touch(
    lead_id: UUID, *, source: str, campaign: str, form_id: str, time: datetime | None = None
) -> LeadMerged:
    """The same person submitting again (a merged duplicate)."""
    return LeadMerged.new(
        source="lead-intake",
        subject=lead_id,
        time=time,
        data={
            "lead_id": lead_id,
            "submission_id": uuid4(),
            "matched_on": "email",
            "form_id": form_id,
            "attribution": {"source": source, "campaign": campaign},
        },
    )


async def apply(handoffs: Handoffs, *events: Envelope) -> None:
    """Each event through handoff's own handler table, as its consumer applies it; a
    captured lead's key first, as heard on ``funnel.people``."""
    for event in events:
        if isinstance(event, LeadCapturedV2):
            await apply(handoffs, key_issued(event.data.lead_id))
        async with outbox.transaction(handoffs.pool) as connection:
            await HANDLERS[type(event)](connection, event)


async def handoff_id_of(handoffs: Handoffs, lead_id: UUID) -> UUID:
    async with handoffs.pool.acquire() as connection:
        found: UUID = await connection.fetchval(
            "SELECT handoff_id FROM handoffs WHERE lead_id = $1", lead_id
        )
    return found


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, token: str, *, next_path: str | None = None
) -> httpx.Response:
    form = await client.get("/inbox/sign-in", params={"next": next_path} if next_path else None)
    data: dict[str, Any] = {"csrf": csrf_of(form), "token": token}
    if next_path:
        data["next"] = next_path
    return await client.post("/inbox/sign-in", data=data, follow_redirects=False)


@contextlib.asynccontextmanager
async def inbox_client(
    handoffs: Handoffs, token: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-less client of handoff's web app over https (the cookies are Secure
    outside development), signed in with ``token`` when given."""
    async with httpx.AsyncClient(
        transport=handoffs.client._transport, base_url="https://handoff"
    ) as client:
        if token is not None:
            answer = await sign_in(client, token)
            assert answer.status_code == 303, answer.text
        yield client
