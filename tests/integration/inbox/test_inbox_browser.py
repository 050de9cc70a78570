"""The inbox in headless Chromium against a real handoff (web over HTTP, and its worker
consuming the broker and running the SLA scanner), as a rep and a manager use it.

One handoff and one browser serve the whole module; each test has its own team, reps
and leads (routed by country), and its own browser contexts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
import uvicorn

from funnel_common.db import create_pool
from funnel_common.events import (
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    Envelope,
    HandoffAccepted,
    HandoffRejectedV2,
    LeadCapturedV2,
    decode_event,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.embedded import free_port
from handoff import worker as handoff_worker
from handoff.web import create_app
from tests.conftest import require_system_tool
from tests.helpers import eventually
from tests.integration.handoff.support import (
    PERSON_KEYS,
    Handoffs,
    handoff_settings,
    key_issued,
)
from tests.integration.inbox.support import a_lead, a_touch, apply, handoff_id_of
from tests.integration.intake.test_landing_page import CHROMIUM_ARGS
from tests.integration.kafka_helpers import read_topic
from tests.platform import serving

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOCS = Path(__file__).resolve().parents[3] / "docs"
UPDATE_SCREENSHOTS = os.environ.get("FUNNEL_UPDATE_SCREENSHOTS") == "1"
WAIT_MS = 20_000


@dataclass
class Served:
    """handoff over real HTTP, its worker, and one Chromium, for the whole module."""

    handoffs: Handoffs
    base: str
    browser: Browser
    topics: CommonSettings
    axe: str
    contexts: list[BrowserContext] = field(default_factory=list)

    async def browse(self, *, zone: str = "UTC", width: int = 900) -> Page:
        context = await self.browser.new_context(
            viewport={"width": width, "height": 1000}, timezone_id=zone, locale="en-US"
        )
        self.contexts.append(context)
        return await context.new_page()

    async def sign_in(self, page: Page, role: Any, subject: str, team: str | None = None) -> None:
        """On the sign-in page (wherever it was reached from): paste a token, submit."""
        token = await self.handoffs.token(role, subject, team)
        await page.get_by_label("Your token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_load_state()

    async def signed_in(self, role: Any, subject: str, team: str | None = None, **kw: Any) -> Page:
        page = await self.browse(**kw)
        await page.goto(f"{self.base}/inbox/sign-in")
        await self.sign_in(page, role, subject, team)
        return page

    async def publish(self, *events: Envelope) -> None:
        producer = new_producer(self.topics)
        await producer.start()
        try:
            for event in events:
                if isinstance(event, LeadCapturedV2):  # its key first, as lead-intake does
                    announced = key_issued(event.data.lead_id)
                    await producer.send_and_wait(
                        self.topics.topic(announced.topic),
                        encode_event(announced),
                        key=announced.key,
                    )
                topic = self.topics.topic(LEADS_TOPIC)
                await producer.send_and_wait(topic, encode_event(event), key=event.key)
        finally:
            await producer.stop()

    async def handoff_of(self, lead_id: UUID) -> UUID:
        return await eventually(
            lambda: handoff_id_of(self.handoffs, lead_id), what="the lead's handoff", timeout=30
        )

    async def reassign(self, handoff_id: UUID, rep_id: str) -> None:
        answer = await self.handoffs.client.post(
            f"/v1/handoffs/{handoff_id}/reassign",
            json={"rep_id": rep_id},
            headers=await self.handoffs.admin(),
        )
        assert answer.status_code == 200, answer.text

    async def row(self, handoff_id: UUID) -> dict[str, Any]:
        return dict(await self.handoffs.handoff(handoff_id))

    async def assert_accessible(self, page: Page, what: str) -> None:
        """axe-core on the page as it is now: no serious or critical violation."""
        if not await page.evaluate("typeof window.axe !== 'undefined'"):
            await page.evaluate(self.axe)
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        found = [
            (violation["id"], violation["impact"], [node["target"] for node in violation["nodes"]])
            for violation in result["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert found == [], f"{what}: {found}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(
    module_database_url: str, module_topics: CommonSettings, axe_source: str
) -> AsyncIterator[Served]:
    chromium = require_system_tool("chromium", "drives the rep inbox")
    from playwright.async_api import async_playwright

    settings = handoff_settings(module_database_url, module_topics)
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
            pool = await create_pool(module_database_url, schema="handoff", max_size=5)
            base = f"http://127.0.0.1:{port}"
            try:
                async with (
                    httpx.AsyncClient(base_url=base) as client,
                    async_playwright() as playwright,
                ):
                    browser = await playwright.chromium.launch(
                        executable_path=chromium, args=CHROMIUM_ARGS
                    )
                    handoffs = Handoffs(client=client, settings=settings, pool=pool)
                    try:
                        yield Served(handoffs, base, browser, module_topics, axe_source)
                    finally:
                        await browser.close()
            finally:
                await pool.close()
        finally:
            server.should_exit = True
            await task


@pytest_asyncio.fixture(loop_scope="module")
async def inbox(served: Served) -> AsyncIterator[Served]:
    """The module's handoff and browser; this test's browser contexts close after it."""
    yield served
    for context in served.contexts:
        await context.close()
    served.contexts.clear()


async def test_a_rep_comes_from_an_email_link_reaches_the_lead_and_decides(
    inbox: Served, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    await inbox.handoffs.setup_team("north", {"nia": {"capacity": 10}}, countries=["NO"])
    captured, qualified = a_lead("Grace", "Compilers Ltd", title="CTO", country="NO")
    touch = a_touch(
        captured.data.lead_id,
        source="ads",
        campaign="spring",
        form_id="pricing",
        time=utc_now() - timedelta(days=2),
    )
    await inbox.publish(captured, touch, qualified)
    handoff_id = await inbox.handoff_of(captured.data.lead_id)
    link = f"{inbox.base}/inbox/handoffs/{handoff_id}"

    # The notification email: a page on another site with the link to the handoff.
    page = await inbox.browse(zone="America/New_York")
    mail = f'<!doctype html><title>Mail</title><a href="{link}">Open the lead</a>'
    await page.route(
        "http://mail.example/**",
        lambda route: route.fulfill(body=mail, content_type="text/html"),
    )
    await page.goto("http://mail.example/")
    await page.get_by_role("link", name="Open the lead").click()
    await expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    await inbox.sign_in(page, "rep", "nia")
    assert page.url == link

    # Everything needed to reach the lead, on the handoff's own page.
    card = page.locator(f"#h-{handoff_id}")
    await expect(card.get_by_role("link", name="grace@compilers.example")).to_have_attribute(
        "href", "mailto:grace@compilers.example"
    )
    await expect(card.get_by_role("link", name="+49 30 1234567")).to_have_attribute(
        "href", "tel:+49301234567"
    )
    await expect(card).to_contain_text("CTO at Compilers Ltd")
    await expect(card).to_contain_text("NO")
    await expect(card).to_contain_text("landing-page · demo_request")
    await expect(card).to_contain_text("company_size +40, title +40")
    await expect(card).to_contain_text("Earlier touches (1)")
    await expect(card).to_contain_text("ads / spring · form pricing")

    # Times in the viewer's zone, UTC on hover.
    assigned_at = (await inbox.row(handoff_id))["assigned_at"]
    shown = card.locator(".status time")
    in_new_york = assigned_at.astimezone(ZoneInfo("America/New_York"))
    await expect(shown).to_contain_text(f"{in_new_york:%-I:%M} {in_new_york:%p}")
    await expect(shown).to_contain_text("E")  # EST or EDT
    await expect(shown).to_have_attribute("title", f"{assigned_at:%Y-%m-%d %H:%M} UTC")
    await inbox.assert_accessible(page, "a handoff's page")

    # A new lead arrives while the rep works; the queue shows it without a reload.
    await page.get_by_role("link", name="My queue", exact=True).click()
    second_captured, second = a_lead("Alan", "Bletchley Systems", country="NO")
    await inbox.publish(second_captured, second)
    await expect(page.locator("article.handoff")).to_have_count(2, timeout=WAIT_MS)
    await expect(page.locator("#queue-news")).to_contain_text("1 new handoff")
    second_id = await inbox.handoff_of(second.data.lead_id)

    # Reject: no reason is preselected, and the browser will not send the form without one.
    rejecting = page.locator(f"#h-{second_id}")
    await expect(rejecting.get_by_label("Reason")).to_have_value("")
    await rejecting.get_by_role("button", name="Reject").click()
    assert not await rejecting.get_by_label("Reason").evaluate("select => select.checkValidity()")
    assert (await inbox.row(second_id))["status"] == "assigned"
    await rejecting.get_by_label("Reason").select_option("no_budget")
    await rejecting.get_by_label("Note").fill("Budget frozen until Q3")
    await rejecting.get_by_role("button", name="Reject").click()
    await expect(page.get_by_role("status")).to_contain_text("Rejected.")
    await inbox.assert_accessible(page, "the queue")

    # Accept with the keyboard alone.
    on_accept = "document.activeElement.textContent.trim() === 'Accept'"
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate(on_accept):
            break
    assert await page.evaluate(on_accept), "Tab never reached the Accept button"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Accepted. The lead is yours")
    assert page.url.startswith(link)
    await expect(page.locator(".status")).to_contain_text("Accepted by you")
    await expect(page.get_by_text("Waiting for a rep")).to_have_count(0)

    # The lead stays at hand in "My accepted"; the history keeps both decisions.
    await page.get_by_role("link", name="My accepted").click()
    await expect(page.locator(f"#h-{handoff_id}")).to_contain_text("+49 30 1234567")
    await inbox.assert_accessible(page, "my accepted leads")
    await page.get_by_role("link", name="History").click()
    rows = page.locator("table.history tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Accepted")
    await expect(rows.nth(1)).to_contain_text("No budget")
    await expect(rows.nth(1)).to_contain_text("Budget frozen until Q3")
    await inbox.assert_accessible(page, "the decided history")

    # Signed in, the email's link opens the handoff straight away (a Lax cookie).
    await page.goto("http://mail.example/")
    await page.get_by_role("link", name="Open the lead").click()
    await page.wait_for_url(link)

    records = await read_topic(inbox.topics, HANDOFFS_TOPIC, expect=4, timeout=30)
    decisions = [decode_event(record.value) for record in records]
    [accepted] = [event for event in decisions if isinstance(event, HandoffAccepted)]
    [rejected] = [event for event in decisions if isinstance(event, HandoffRejectedV2)]
    assert (accepted.data.rep_id, accepted.data.handoff_id) == ("nia", handoff_id)
    assert rejected.data.reason == "no_budget"
    # The note travels sealed with the lead's key (PERSON_KEYS: lead-intake's, here).
    sealed_note = rejected.data.sealed_note
    assert sealed_note is not None
    assert "Budget" not in sealed_note
    key = PERSON_KEYS[rejected.data.lead_id]
    assert key.open(sealed_note, "note") == "Budget frozen until Q3"


async def test_what_is_on_fire_comes_first_in_a_reps_queue(inbox: Served, tmp_path: Path) -> None:
    from playwright.async_api import expect

    handoffs = inbox.handoffs
    await handoffs.setup_team(
        "south", {"fay": {"capacity": 10}, "gus": {"capacity": 10}}, countries=["FR"]
    )
    now = utc_now()
    # Two hours past due: the worker's scanner breaches it and hands it to the other rep.
    captured, late = a_lead("Barbara", "Liskov Labs", title="Head of Platform", country="FR")
    lead_id = captured.data.lead_id
    await apply(
        handoffs, captured, a_touch(lead_id, source="ads", campaign="q3", form_id="pricing")
    )
    breached = await handoffs.qualify_directly(late, now=now - timedelta(hours=3))
    await eventually(lambda: inbox.row(breached), until=lambda row: row["breaches"] == 1)
    if (await inbox.row(breached))["rep_id"] != "fay":
        await inbox.reassign(breached, "fay")
    await handoffs.put("/v1/reps/gus", {"team_id": "south", "capacity": 0})
    _, risky = a_lead("Edsger", "Semaphore GmbH", title="VP Engineering", country="FR")
    at_risk = await handoffs.qualify_directly(risky, now=now - timedelta(minutes=40))
    _, fresh = a_lead("Margaret", "Apollo Guidance", title="Director of IT", country="FR")
    on_time = await handoffs.qualify_directly(fresh, now=now)

    page = await inbox.signed_in("rep", "fay")
    cards = page.locator("article.handoff")
    await expect(cards).to_have_count(3)
    assert [await card.get_attribute("id") for card in await cards.all()] == [
        f"h-{breached}",
        f"h-{at_risk}",
        f"h-{on_time}",
    ]
    headings = page.locator("h2.group")
    await expect(headings).to_have_text(["On fire (1)", "At risk (1)", "On time (1)"])
    fire = page.locator(f"#h-{breached} .sla")
    await expect(fire).to_contain_text("Breached")
    await expect(fire).to_contain_text("1 breach")
    await expect(fire).to_contain_text(r"2h")
    await expect(fire).to_contain_text("past due")
    await expect(fire).to_contain_text("next deadline in")
    await expect(fire.locator(".sla-icon")).to_have_text("⚠")  # colour is never the only signal
    await expect(page.locator(f"#h-{at_risk} .sla")).to_contain_text("At risk")
    await expect(page.locator(f"#h-{on_time} .sla")).to_contain_text("left")
    await inbox.assert_accessible(page, "a queue with work on fire")
    shot = DOCS / "inbox.png" if UPDATE_SCREENSHOTS else tmp_path / "inbox.png"
    await page.screenshot(path=str(shot), full_page=True)

    # On a phone: one column, nothing wider than the screen.
    phone = await inbox.signed_in("rep", "fay", width=390)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390


async def test_a_manager_sees_fire_first_in_a_table_and_reassigns_in_bulk(
    inbox: Served, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    handoffs = inbox.handoffs
    segments = {"segments": ["smb", "mid_market"], "capacity": 10}
    # No reassignment on breach: the first one escalates to the manager.
    await handoffs.setup_team(
        "west", {"wes": segments, "wyn": segments}, countries=["ES"], reassign_up_to=0
    )
    now = utc_now()
    _, late = a_lead("Frances", "Allen Compilers", country="ES")
    escalated = await handoffs.qualify_directly(late, now=now - timedelta(hours=3))
    await eventually(lambda: inbox.row(escalated), until=lambda row: row["status"] == "escalated")
    _, big = a_lead("Jean", "Sammet Enterprises", country="ES", company_size=5000)
    waiting = await handoffs.qualify_directly(big, now=now)
    _, risky = a_lead("Sophie", "Wilson Chips", country="ES")
    at_risk = await handoffs.qualify_directly(risky, now=now - timedelta(minutes=40))
    others = [
        await handoffs.qualify_directly(a_lead(name, f"{name} Corp", country="ES")[1], now=now)
        for name in ("Ada", "Radia", "Hedy", "Karen")
    ]
    held_by_wes = [one for one in others if (await inbox.row(one))["rep_id"] == "wes"]
    assert len(held_by_wes) == 2  # round robin alternates
    wes_rows = len(held_by_wes) + ((await inbox.row(at_risk))["rep_id"] == "wes")

    page = await inbox.signed_in("manager", "west-manager", "west", width=1100)
    assert page.url == f"{inbox.base}/inbox/team"
    rows = page.locator("table.team tbody tr")
    await expect(rows).to_have_count(7)
    first, last = rows.nth(0), rows.nth(6)
    await expect(first).to_have_id(f"r-{escalated}")
    await expect(rows.nth(1)).to_have_id(f"r-{at_risk}")
    await expect(rows.nth(1)).to_contain_text("At risk")
    await expect(first).to_contain_text("west-manager (manager)")
    await expect(first).to_contain_text("Escalated")
    await expect(first).to_contain_text("1 breach")
    await expect(first).to_contain_text("past due")
    await expect(last).to_have_id(f"r-{waiting}")
    await expect(last).to_contain_text(
        "No eligible rep: wes does not cover enterprise; wyn does not cover enterprise."
    )
    await inbox.assert_accessible(page, "the team table")
    shot = DOCS / "inbox-manager.png" if UPDATE_SCREENSHOTS else tmp_path / "inbox-manager.png"
    await page.screenshot(path=str(shot), full_page=True)

    # Filters: by holder, by SLA state.
    await page.get_by_label("Holder").select_option("wes")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(wes_rows)
    await page.get_by_label("Holder").select_option("")
    await page.get_by_label("SLA state").select_option("on-fire")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_id(f"r-{escalated}")

    # Bulk: wes's two handoffs to wyn, in one go.
    await page.get_by_label("SLA state").select_option("")
    await page.get_by_label("Holder").select_option("wes")
    await page.get_by_role("button", name="Filter").click()
    for one in held_by_wes:
        await page.locator(f"#pick-{one}").check()
    await page.get_by_label("To", exact=True).select_option("wyn")
    await page.get_by_role("button", name="Reassign selected").click()
    await expect(page.get_by_role("status")).to_contain_text("Reassigned 2 handoffs.")
    assert [(await inbox.row(one))["rep_id"] for one in held_by_wes] == ["wyn", "wyn"]

    # The escalated handoff is the manager's own to decide, and says so.
    await page.get_by_role("link", name="My queue", exact=True).click()
    card = page.locator(f"#h-{escalated}")
    await expect(card).to_contain_text("Escalated to you, the team's manager")
    await expect(card.get_by_role("button", name="Accept")).to_be_visible()


async def test_a_marketer_reads_the_feedback_from_sales_and_exports_it(inbox: Served) -> None:
    from playwright.async_api import expect

    await inbox.handoffs.setup_team("iberia", {"ines": {"capacity": 10}}, countries=["PT"])
    ines = await inbox.handoffs.auth("rep", "ines")
    rejected: list[UUID] = []
    for name, note in (("Rui", "=1+2 is not a budget"), ("Rita", "Students, not buyers")):
        captured, qualified = a_lead(name, f"{name} Lda", country="PT", campaign="lisbon-fair")
        await inbox.publish(captured, qualified)
        handoff_id = await inbox.handoff_of(captured.data.lead_id)
        answer = await inbox.handoffs.client.post(
            f"/v1/handoffs/{handoff_id}/reject",
            json={"reason": "no_budget" if name == "Rui" else "not_a_fit", "note": note},
            headers=ines,
        )
        assert answer.status_code == 200, answer.text
        rejected.append(handoff_id)

    # A marketer's day starts at the feedback; there is no queue to decide from.
    page = await inbox.signed_in("marketing", "mara")
    assert page.url == f"{inbox.base}/inbox/feedback"
    await expect(page.get_by_role("link", name="My queue", exact=True)).to_have_count(0)
    await page.get_by_label("Campaign").fill("lisbon-fair")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.feedback tbody tr")
    await expect(rows).to_have_count(2)
    rui = page.locator(f"#f-{rejected[0]}")
    await expect(rui).to_contain_text("Rui Lda")
    await expect(rui).to_contain_text("“=1+2 is not a budget”")
    await expect(rui).to_contain_text("ines")
    await expect(rui).to_contain_text("webinar / lisbon-fair")
    await inbox.assert_accessible(page, "the feedback page")

    await page.get_by_label("Reason").select_option("no_budget")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_id(f"f-{rejected[0]}")

    # The export is the filtered list, and nothing in it runs in a spreadsheet.
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="Export these as CSV").click()
    download = await waiting.value
    assert download.suggested_filename == "feedback.csv"
    exported = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8")
    [header, *lines] = list(csv.reader(io.StringIO(exported)))
    assert len(lines) == 1
    row = dict(zip(header, lines[0], strict=True))
    assert (row["handoff_id"], row["reason"], row["campaign"]) == (
        str(rejected[0]),
        "no_budget",
        "lisbon-fair",
    )
    assert row["note"] == "'=1+2 is not a budget"
