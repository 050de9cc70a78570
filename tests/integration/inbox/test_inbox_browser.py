"""The inbox in headless Chromium against a real handoff: broker in, decisions out."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import uvicorn

from funnel_common.db import create_pool
from funnel_common.events import (
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    HandoffRejected,
    LeadQualified,
    decode_event,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import free_port
from handoff import worker as handoff_worker
from handoff.web import create_app
from tests.conftest import require_system_tool
from tests.helpers import eventually, parse_metric
from tests.integration.handoff.support import Handoffs, handoff_settings
from tests.integration.intake.test_landing_page import CHROMIUM_ARGS
from tests.integration.kafka_helpers import read_topic
from tests.platform import serving

# The README's screenshot; refreshed with FUNNEL_UPDATE_SCREENSHOTS=1, else kept in tmp.
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "inbox.png"
WAIT_MS = 20_000


def qualified(first_name: str, company: str, title: str) -> LeadQualified:
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
                "email": f"{first_name.lower()}@example.com",
                "first_name": first_name,
                "last_name": "Example",
                "company": company,
                "title": title,
                "company_size": 200,
                "country": "DE",
            },
        },
    )


@contextlib.asynccontextmanager
async def serving_handoff(database_url: str, topics: CommonSettings) -> AsyncIterator[Handoffs]:
    """handoff's web app over real HTTP (for the browser) and its worker, which consumes
    the leads the test publishes."""
    settings = handoff_settings(database_url, topics)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    async with serving(handoff_worker.create_app(settings), "handoff-worker"):
        task = asyncio.create_task(server.serve())
        try:
            await eventually(
                lambda: asyncio.sleep(0, server.started), what="handoff listening", timeout=30
            )
            pool = await create_pool(database_url, schema="handoff", max_size=5)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    yield Handoffs(client=client, settings=settings, pool=pool)
            finally:
                await pool.close()
        finally:
            server.should_exit = True
            await task


async def publish(topics: CommonSettings, *events: LeadQualified) -> None:
    producer = new_producer(topics)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topics.topic(LEADS_TOPIC), encode_event(event), key=event.key
            )
    finally:
        await producer.stop()


async def handoff_of(handoffs: Handoffs, event: LeadQualified) -> dict[str, Any]:
    async with handoffs.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT handoff_id, rep_id, status FROM handoffs WHERE lead_id = $1",
            event.data.lead_id,
        )
    return dict(row) if row else {}


async def test_reps_and_a_manager_work_the_inbox_in_chromium(
    database_url: str, topics: CommonSettings, tmp_path: Path
) -> None:
    chromium = require_system_tool("chromium", "drives the rep inbox")
    from playwright.async_api import Page, async_playwright, expect

    async with serving_handoff(database_url, topics) as handoffs, async_playwright() as pw:
        base = str(handoffs.client.base_url).rstrip("/")
        await handoffs.setup_team(
            "emea", {"ada": {}, "bob": {"capacity": 0}}, countries=["DE"], minutes=30
        )
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)

        async def signed_in(role: Any, subject: str) -> Page:
            context = await browser.new_context(viewport={"width": 900, "height": 1100})
            page = await context.new_page()
            await page.goto(f"{base}/inbox")
            await page.get_by_label("Your token").fill(await handoffs.token(role, subject, "emea"))
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(f"{base}/inbox")
            return page

        try:
            ada = await signed_in("rep", "ada")
            await expect(ada.get_by_text("Nothing waiting")).to_be_visible()

            leads = [
                qualified("Grace", "Compilers Ltd", "CTO"),
                qualified("Alan", "Bletchley Systems", "Head of Data"),
                qualified("Edsger", "Semaphore GmbH", "VP Engineering"),
            ]
            await publish(topics, *leads)
            # They appear without a reload: the page polls its queue fragment.
            cards = ada.locator("article.handoff")
            await expect(cards).to_have_count(3, timeout=WAIT_MS)
            await expect(ada.locator("#queue-news")).to_contain_text("new handoff")
            await expect(ada.locator(".sla-on-time").first).to_contain_text("On time")
            await expect(ada.locator(".sla-countdown").first).to_contain_text("left")
            update = os.environ.get("FUNNEL_UPDATE_SCREENSHOTS") == "1"
            shot = SCREENSHOT if update else tmp_path / "inbox.png"
            await ada.screenshot(path=str(shot), full_page=True)

            first, second, third = [
                UUID(str((await handoff_of(handoffs, lead))["handoff_id"])) for lead in leads
            ]
            await ada.locator(f"#h-{first}").get_by_role("button", name="Accept").click()
            await expect(ada.get_by_role("status")).to_contain_text("Accepted.")
            card = ada.locator(f"#h-{second}")
            await card.get_by_label("Reason").select_option("not_a_fit")
            await card.get_by_role("button", name="Reject").click()
            await expect(ada.get_by_role("status")).to_contain_text("Rejected.")
            await expect(cards).to_have_count(1)

            # Another rep is refused ada's handoff, on a page that says so.
            bob = await signed_in("rep", "bob")
            answer = await bob.goto(f"{base}/inbox/handoffs/{third}")
            assert answer is not None
            assert answer.status == 403
            await expect(bob.get_by_role("alert")).to_contain_text("not yours")

            # The manager sees the team's queue with its holder and reassigns.
            manager = await signed_in("manager", "emea-manager")
            await expect(manager.get_by_role("heading", name="Team emea queue")).to_be_visible()
            card = manager.locator(f"#h-{third}")
            await expect(card).to_contain_text("ada")
            await card.get_by_label("Reassign to").select_option("bob")
            await card.get_by_role("button", name="Reassign").click()
            await expect(manager.get_by_role("status")).to_contain_text("Reassigned.")
        finally:
            await browser.close()

        assert (await handoff_of(handoffs, leads[2]))["rep_id"] == "bob"
        records = await read_topic(topics, HANDOFFS_TOPIC, expect=6, timeout=30)
        metrics = (await handoffs.client.get("/metrics")).text

    events = [decode_event(record.value) for record in records]
    assert sorted(type(event).__name__ for event in events) == [
        "HandoffAccepted",
        "HandoffAssigned",
        "HandoffAssigned",
        "HandoffAssigned",
        "HandoffReassigned",
        "HandoffRejected",
    ]
    [rejected] = [event for event in events if isinstance(event, HandoffRejected)]
    assert (rejected.data.rep_id, rejected.data.reason) == ("ada", "not_a_fit")
    # Left open: the reassigned one, now bob's.
    assert parse_metric(metrics, "funnel_handoff_open", 'status="assigned",team="emea"') == 1
