"""The sample landing page, driven in headless Chromium against a real lead-intake."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import uvicorn

from funnel_common.settings import CommonSettings
from funnel_tools.embedded import free_port
from lead_intake.web import create_app
from tests.conftest import require_system_tool
from tests.helpers import eventually
from tests.integration.intake.conftest import intake_settings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving_examples() -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLES))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_forms(path: Path, page: str) -> None:
    """The landing-page form, allowed from the test's page origin only."""
    path.write_text(
        f"""forms:
  default: {{}}
  landing-page:
    key: pk_landing_7d1f3c
    form_type: demo_request
    required_fields: [email, first_name, company]
    origins: ["{page}"]
    thank_you_urls: ["{page}/thanks.html"]
"""
    )


@contextlib.asynccontextmanager
async def serving_intake(
    database_url: str, common: CommonSettings, page: str, forms: Path
) -> AsyncIterator[str]:
    write_forms(forms, page)
    app = create_app(intake_settings(database_url, common, forms_file=forms))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(
            lambda: asyncio.sleep(0, server.started), what="lead-intake listening", timeout=30
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_sample_page_posts_a_lead_and_lands_on_thank_you(
    database_url: str, topics: CommonSettings, tmp_path: Path
) -> None:
    chromium = require_system_tool("chromium", "drives the sample landing page")
    from playwright.async_api import async_playwright

    with serving_examples() as site:
        async with (
            serving_intake(database_url, topics, site, tmp_path / "forms.yaml") as intake,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(
                    f"{site}/landing-page.html?intake={intake}&utm_source=browser&utm_campaign=q4"
                )
                await page.fill("input[name=email]", "Ada.Lovelace@Example.com")
                await page.fill("input[name=first_name]", "Ada")
                await page.fill("input[name=company]", "Analytical Engines")
                await page.fill("input[name=title]", "CTO")
                await page.select_option("select[name=company_size]", "500")
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{site}/thanks.html", timeout=15_000)
                heading = await page.text_content("h1")
            finally:
                await browser.close()

    assert heading == "Thank you!"
    connection = await asyncpg.connect(database_url)
    try:
        lead = await connection.fetchrow(
            "SELECT email, form_id, status, attribution::text FROM intake.leads"
        )
    finally:
        await connection.close()
    assert lead is not None
    assert (lead["email"], lead["form_id"], lead["status"]) == (
        "ada.lovelace@example.com",
        "landing-page",
        "qualified",
    )
    assert '"campaign":"q4"' in lead["attribution"].replace(" ", "")
    assert '"utm_source":"browser"' in lead["attribution"].replace(" ", "")
