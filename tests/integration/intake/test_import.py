"""``funnel import``: CSV rows through the same endpoints, bad rows reported by line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from funnel_common.events import DEALS_TOPIC, LEADS_TOPIC, DealOpened, DealWon, LeadCapturedV2
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import free_port
from funnel_tools.importer import BadRow, ImportFileError, Kind, import_file, print_report
from lead_intake.web import create_app
from metrics.settings import MetricsSettings
from metrics.web import create_app as create_metrics
from tests.helpers import served_in_thread
from tests.integration.intake.conftest import (
    CRM_SECRET,
    IMPORT_SECRET,
    IntakeFactory,
    events_on,
    intake_settings,
    personal_of,
)

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
    captured = [e for e in lead_events if isinstance(e, LeadCapturedV2)]
    assert sorted([(await personal_of(topics, e)).email for e in captured]) == [
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


def _run_cli(*args: str) -> Result:
    """`funnel import ...` as a person runs it (its own event loop, so in a thread)."""
    from funnel_cli.main import app

    return CliRunner().invoke(app, ["import", *args])


async def test_a_file_that_is_not_utf8_is_one_clear_error_and_nothing_is_sent(
    intake: httpx.AsyncClient, tmp_path: Path, database_url: str
) -> None:
    latin1 = tmp_path / "leads.csv"
    latin1.write_bytes("email,company\nzoe@example.com,Société Générale\n".encode("latin-1"))

    with pytest.raises(ImportFileError, match="not UTF-8") as refused:
        await import_file(Kind.leads, latin1, intake, IMPORT_SECRET, Console(file=io.StringIO()))

    assert "line 2" in str(refused.value)
    assert await _count(database_url, "SELECT count(*) FROM intake.leads") == 0


async def test_a_wrong_header_is_reported_once_not_per_row(
    intake: httpx.AsyncClient, tmp_path: Path
) -> None:
    deals = tmp_path / "deals.csv"
    deals.write_text("deal,event,amount\n" + "D-1,opened,100\n" * 50)

    with pytest.raises(ImportFileError) as refused:
        await import_file(Kind.deals, deals, intake, CRM_SECRET, Console(file=io.StringIO()))

    message = str(refused.value)
    assert "missing column(s) deal_id" in message
    assert "unknown column(s) amount, deal" in message
    assert message.count("\n") == 0


async def test_a_row_with_more_cells_than_the_header_is_a_bad_row_and_others_go_on(
    intake: httpx.AsyncClient, tmp_path: Path
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("email,company\nada@example.com,AE\nbob@example.com,Acme,Inc,extra\n")

    report = await import_file(
        Kind.leads, leads, intake, IMPORT_SECRET, Console(file=io.StringIO())
    )

    assert report.applied == 1
    assert report.bad == [BadRow(3, 0, "2 cell(s) more than the header has columns")]


async def test_a_row_the_server_fails_with_5xx_is_listed_and_the_import_goes_on(
    database_url: str, topics: CommonSettings, tmp_path: Path
) -> None:
    app = create_app(intake_settings(database_url, topics))
    leads = tmp_path / "leads.csv"
    leads.write_text("email\nfirst@example.com\ndoomed@example.com\nlast@example.com\n")
    output = io.StringIO()

    with served_in_thread(app, what="lead-intake") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # A check PostgreSQL makes only at COMMIT: that row's post fails with a 500.
            await _execute(database_url, DOOMED_TRIGGER)
            report = await import_file(
                Kind.leads, leads, client, IMPORT_SECRET, Console(file=output, width=200)
            )
            print_report(report, Console(file=output, width=200))

    assert report.applied == 2
    assert [(bad.line, bad.status) for bad in report.bad] == [(3, 500)]
    assert "Rows not imported" in output.getvalue()


@pytest.mark.parametrize("where", ["nothing listens", "not a URL", "another service"])
async def test_a_service_that_is_not_there_is_one_line_and_a_non_zero_exit(
    where: str, tmp_path: Path, database_url: str, topics: CommonSettings
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("email\nada@example.com\nbob@example.com\n")
    urls = {"nothing listens": f"http://127.0.0.1:{free_port()}", "not a URL": "htp:/intake"}

    with contextlib.ExitStack() as stack:
        if where == "another service":
            metrics = create_metrics(MetricsSettings(database_url=database_url, common=topics))
            urls[where] = stack.enter_context(served_in_thread(metrics, what="metrics"))
        result = await asyncio.to_thread(_run_cli, "leads", str(leads), "--url", urls[where])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [
        next(line for line in result.output.splitlines() if "funnel import:" in line)
    ]


DOOMED_TRIGGER = """
    CREATE FUNCTION intake.refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.email = 'doomed@example.com' THEN RAISE EXCEPTION 'doomed'; END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER doomed AFTER INSERT ON intake.leads
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION intake.refuse_doomed()"""


async def _execute(database_url: str, sql: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _count(database_url: str, query: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval(query)
        return count
    finally:
        await connection.close()
