"""The review pack's page in headless Chromium against a real metrics (web over HTTP, its
worker consuming the broker): a marketer follows the pack's link, signs in with a token,
reads the same figures as GET /v1/review, and prints it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from funnel_common.periods import week_of_instant
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.embedded import free_port
from metrics import worker as metrics_worker
from metrics.web import create_app
from tests.conftest import require_system_tool
from tests.helpers import eventually
from tests.integration.access import issued_token
from tests.integration.intake.test_landing_page import CHROMIUM_ARGS
from tests.metrics.stories import NOTE, three_campaigns
from tests.metrics.support import produce
from tests.metrics.test_review import QUARTER, review_settings
from tests.platform import serving


@pytest.fixture
async def metrics_url(database_url: str, topics: CommonSettings) -> AsyncIterator[str]:
    settings = review_settings(database_url, topics)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    async with serving(metrics_worker.create_app(settings), "metrics-worker"):
        task = asyncio.create_task(server.serve())
        try:
            await eventually(
                lambda: asyncio.sleep(0, server.started), what="metrics listening", timeout=30
            )
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def test_a_marketer_opens_the_weeks_pack_in_a_browser_and_prints_it(
    metrics_url: str, database_url: str, topics: CommonSettings
) -> None:
    chromium = require_system_tool("chromium", "opens the review page")
    from playwright.async_api import async_playwright, expect

    await produce(topics, three_campaigns(utc_now()))
    week = str(week_of_instant(utc_now(), "UTC"))
    token = await issued_token(database_url, "metrics", topics.auth_secret, role="marketing")
    bearer = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=metrics_url) as client:

        async def captured() -> int:
            funnel = (await client.get("/v1/funnel", params={"period": QUARTER})).json()
            count: int = funnel["stages"]["period"]["total"]["captured"]
            return count

        await eventually(captured, until=lambda n: n == 8, timeout=30, what="the story")
        answer = await client.get("/v1/review", params={"week": week}, headers=bearer)
        assert answer.status_code == 200, answer.text
        pack = answer.json()["pack"]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 1000})
            await page.goto(f"{metrics_url}/review?week={week}")
            await page.get_by_label("Your token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_load_state()
            assert page.url == f"{metrics_url}/review?week={week}"

            await expect(page.get_by_role("status")).to_contain_text("Preview")
            reasons = page.locator("ol.reasons")
            # Each reason with the pack's count; the rep's note under its own reason.
            await expect(reasons.locator(":scope > li")).to_have_count(
                len(pack["top_rejection_reasons"])
            )
            await expect(reasons.locator("q")).to_have_text([NOTE])
            not_a_fit = reasons.locator(":scope > li", has_text="Not a fit")
            await expect(not_a_fit.locator("q")).to_have_text(NOTE)
            [best, *_] = pack["best_campaigns"]
            best_row = page.locator("table.campaigns").first.locator("tbody tr").first
            await expect(best_row).to_contain_text(f"{best['source']} / {best['campaign']}")
            await expect(best_row).to_contain_text(f"{best['won_value_cents'] // 100:,}")
            missed = page.locator("table.missed tbody tr")
            await expect(missed).to_have_count(len(pack["missed_sla"]["handoffs"]))

            # Printed: no navigation or sign-out, the week named at the foot.
            printed = page.get_by_text(f"Printed from the review of {week}")
            await expect(printed).to_be_hidden()
            await page.emulate_media(media="print")
            await expect(printed).to_be_visible()
            await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
            await expect(page.get_by_role("navigation", name="Weeks")).to_be_hidden()
            assert (await page.pdf(format="A4"))[:4] == b"%PDF"
        finally:
            await browser.close()
