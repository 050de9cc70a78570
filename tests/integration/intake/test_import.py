"""``funnel import``: CSV rows through the same endpoints, bad rows reported by line."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
from rich.console import Console

from funnel_common.events import DEALS_TOPIC, LEADS_TOPIC, DealOpened, DealWon, LeadCaptured
from funnel_common.settings import CommonSettings
from funnel_tools.importer import Kind, import_file, print_report
from tests.integration.intake.conftest import CRM_SECRET, IMPORT_SECRET, IntakeFactory, events_on

LEADS_CSV = """email,first_name,company_size,utm_source
ada@example.com,Ada,120,trade-show
not-an-email,Bob,,trade-show
"multi@example.com","Multi
Line",5,trade-show
carol@example.com,Carol,-4,trade-show
"""

DEALS_CSV = """deal_id,event,email,amount_cents,currency,closed_on
D-1,opened,ada@example.com,250000,USD,
D-2,opened,ada@example.com,100,EUR,
D-1,won,,,,2026-11-02
"""


async def test_an_import_applies_good_rows_reports_bad_ones_by_line_and_is_repeatable(
    start_intake: IntakeFactory, topics: CommonSettings, tmp_path: Path
) -> None:
    # A low rate limit: signed imports are trusted and must not be throttled.
    intake = await start_intake(rate_limit_per_client=1)
    leads_file = tmp_path / "leads.csv"
    leads_file.write_text(LEADS_CSV)
    deals_file = tmp_path / "deals.csv"
    deals_file.write_text(DEALS_CSV)
    output = io.StringIO()
    console = Console(file=output, width=200)

    leads = await import_file(Kind.leads, leads_file, intake, IMPORT_SECRET, console)
    deals = await import_file(Kind.deals, deals_file, intake, CRM_SECRET, console)
    # A later run (a later signature timestamp: the same signature twice is a replay).
    again = await import_file(
        Kind.leads, leads_file, intake, IMPORT_SECRET, console, clock=lambda: time.time() + 1
    )
    print_report(leads, console)

    assert leads.applied == 2
    assert [(bad.line, bad.status) for bad in leads.bad] == [(3, 422), (6, 422)]
    assert leads.bad[0].problem.startswith("email:")
    assert leads.bad[1].problem.startswith("company_size:")
    assert (deals.applied, [(bad.line, bad.status) for bad in deals.bad]) == (2, [(3, 422)])
    assert "currency: must be the reporting currency USD" in deals.bad[0].problem
    assert (again.applied, again.unchanged, len(again.bad)) == (0, 2, 2)
    assert "Rows not imported" in output.getvalue()
    lead_events = await events_on(topics, LEADS_TOPIC, expect=2)
    captured = [e for e in lead_events if isinstance(e, LeadCaptured)]
    assert sorted(e.data.profile.email for e in captured) == [
        "ada@example.com",
        "multi@example.com",
    ]
    assert all(e.data.attribution.source == "trade-show" for e in captured)
    deal_events = await events_on(topics, DEALS_TOPIC, expect=2)
    assert [type(e) for e in deal_events] == [DealOpened, DealWon]
    won = deal_events[1]
    assert isinstance(won, DealWon)
    assert won.data.attribution.source == "trade-show"


async def test_an_unsigned_or_wrongly_signed_import_is_refused(
    intake: httpx.AsyncClient, tmp_path: Path
) -> None:
    leads_file = tmp_path / "leads.csv"
    leads_file.write_text(LEADS_CSV)

    report = await import_file(
        Kind.leads, leads_file, intake, "wrong-secret", Console(file=io.StringIO())
    )

    assert report.applied == 0
    assert {bad.status for bad in report.bad} == {401}
