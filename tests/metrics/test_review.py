"""The Monday review pack against real PostgreSQL, broker, SMTP server (aiosmtpd) and a
Slack receiver: its figures are /v1/funnel's at the same instant; the worker sends it
once a week with two replicas and across a restart, a missed week late and once; the
page and its JSON for anyone with a token; a replay keeps what was sent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from funnel_common.db import create_pool
from funnel_common.periods import parse_week, period_of_instant, week_of_instant
from funnel_common.settings import CommonSettings
from funnel_common.telemetry import PlatformMetrics
from funnel_common.types import utc_now
from funnel_tools.embedded import free_port
from metrics import review_store
from metrics import worker as metrics_worker
from metrics.review import ReviewPack
from metrics.review_worker import ReviewWorker
from metrics.settings import MetricsSettings
from tests.helpers import eventually
from tests.integration.access import issued_token
from tests.integration.handoff.mailbox import mailbox
from tests.integration.handoff.receiver import Receiver
from tests.metrics.stories import NOTE, three_campaigns
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    produce,
    running_metrics,
    sources_file,
)
from tests.platform import serving

NOW = utc_now()
QUARTER = str(period_of_instant(NOW, "UTC"))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEDULED = "SELECT week FROM review_weeks WHERE state = 'scheduled'"


def review_settings(database_url: str, common: CommonSettings, **overrides: Any) -> MetricsSettings:
    return MetricsSettings(
        database_url=database_url,
        common=common,
        stage_probabilities=PROBABILITIES,
        default_stage_probability=DEFAULT_PROBABILITY,
        sources_file=sources_file(),
        **{"review_scan_interval_seconds": 0.1, "review_retry_seconds": 0.1, **overrides},
    )


@contextlib.asynccontextmanager
async def slack() -> AsyncIterator[Receiver]:
    receiver = Receiver(port=free_port())
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def _story_applied(client: httpx.AsyncClient, events: int) -> None:
    async def captured() -> int:
        funnel = (await client.get("/v1/funnel", params={"period": QUARTER})).json()
        count: int = funnel["stages"]["period"]["total"]["captured"]
        return count

    await eventually(captured, until=lambda n: n == events, timeout=30, what="the story")


async def test_the_packs_figures_are_the_funnels_at_the_same_instant(
    database_url: str, topics: CommonSettings
) -> None:
    settings = review_settings(database_url, topics)
    async with running_metrics(settings, worker=False) as client:
        # The worker applies the story and stops: its own review timer, scanning every
        # 0.1 s, would otherwise race this test's worker for the week made due below.
        async with serving(metrics_worker.create_app(settings), "metrics-worker"):
            await produce(topics, three_campaigns(NOW))
            await _story_applied(client, 8)

            async def heard() -> tuple[int, int, int]:
                funnel = (await client.get("/v1/funnel", params={"period": QUARTER})).json()
                sla = funnel["handoffs"]["sla"]
                return (
                    funnel["revenue"]["won_value_cents"],
                    funnel["handoffs"]["rejected"],
                    sla["deadlines"],
                )

            # Every topic's events, not only the leads, before the worker stops.
            await eventually(heard, until=lambda n: n == (170_000, 2, 7), what="the whole story")
        pool = await create_pool(database_url, schema="metrics", max_size=2)
        try:
            worker = ReviewWorker(pool, settings, PlatformMetrics("metrics-test"))
            now = utc_now()
            # The first pack: scheduled for the next occurrence, fired once due.
            assert await worker.fire_due(now) is None
            async with pool.acquire() as connection:
                await connection.execute("UPDATE metrics.review_weeks SET due_at = $1", now)
            week = await worker.fire_due(now)
            funnel = (await client.get("/v1/funnel", params={"period": QUARTER})).json()
            assert week is not None
            async with pool.acquire() as connection:
                pack = await review_store.pack_of(connection, parse_week(week))
        finally:
            await pool.close()

    assert pack is not None
    revenue, handoffs, plan = funnel["revenue"], funnel["handoffs"], funnel["plan"]
    assert (pack.period, pack.coverage.now) == (QUARTER, revenue["coverage_ratio"])
    assert pack.won_value_cents.now == revenue["won_value_cents"] == 170_000
    assert pack.target_cents == revenue["target_cents"]
    assert (pack.win_rate_count.now, pack.win_rate_value.now) == (
        revenue["win_rate"]["count"],
        revenue["win_rate"]["value"],
    )
    retention = funnel["retention"] or {}
    assert pack.retention_net.now == retention.get("net")
    assert pack.sla_attainment.now == handoffs["sla"]["attainment_ratio"] == 6 / 7
    assert pack.leads_needed.now == plan["leads_needed"]
    assert pack.rejected == handoffs["rejected"] == 2
    assert {reason.reason: reason.count for reason in pack.top_rejection_reasons} == {
        reason: count for reason, count in handoffs["rejected_by_reason"].items() if count
    }
    assert [(line.source, line.campaign) for line in pack.best_campaigns] == [
        ("webinar", "launch"),
        ("web", None),
    ]
    assert [(line.source, line.campaign) for line in pack.worst_campaigns] == [("ads", "spring")]
    assert pack.compared_with is None  # the first pack of the quarter
    assert not pack.late


def _due_in(seconds: int) -> dict[str, Any]:
    """A schedule a few seconds from now, in the reporting zone (UTC here)."""
    at = utc_now() + timedelta(seconds=seconds)
    return {
        "review_day": WEEKDAYS[at.weekday()],
        "review_time": time(at.hour, at.minute, at.second),
    }


async def _rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "metrics"})
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def _delivered(database_url: str) -> int:
    rows = await _rows(
        database_url, "SELECT count(*) AS n FROM review_deliveries WHERE delivered_at IS NOT NULL"
    )
    count: int = rows[0]["n"]
    return count


@pytest.mark.timeout(300)
async def test_one_pack_a_week_reaches_email_and_slack_with_two_replicas_and_a_restart(
    database_url: str, topics: CommonSettings
) -> None:
    with mailbox() as box:
        async with slack() as receiver:
            # In a few seconds, the pack's time: both replicas wait for it.
            settings = review_settings(
                database_url,
                topics,
                **_due_in(4),
                review_email_to=["cmo@example.com", "sales-lead@example.com"],
                review_slack_webhook_url=f"{receiver.url}/services/T0/B0/x",
                smtp_host="127.0.0.1",
                smtp_port=box.port,
                smtp_tls="none",
                public_url="https://metrics.example.com",
            )
            await produce(topics, three_campaigns(NOW))
            async with running_metrics(settings) as client:
                await _story_applied(client, 8)
                async with serving(metrics_worker.create_app(settings), "metrics-worker-2"):
                    await eventually(
                        lambda: _delivered(database_url), until=lambda n: n == 2, timeout=120,
                        what="the first week's email and Slack message",
                    )  # fmt: skip
                    # The worker schedules the next week as soon as this one is sent.
                    await eventually(
                        lambda: _rows(database_url, SCHEDULED), until=bool,
                        what="the next week's timer",
                    )  # fmt: skip
            first = box.messages[0]
            [week] = await _rows(
                database_url, "SELECT week, late FROM review_weeks WHERE state = 'sent'"
            )

            # Both workers stopped. Simulate the next week's time passing while none runs:
            # its row falls due, and the next worker to start sends it, late, once.
            await _rows(
                database_url,
                "UPDATE review_weeks SET due_at = now() - interval '2 hours'"
                " WHERE state = 'scheduled'",
            )
            async with (
                serving(metrics_worker.create_app(settings), "metrics-worker-3"),
                serving(metrics_worker.create_app(settings), "metrics-worker-4"),
            ):
                await eventually(
                    lambda: _delivered(database_url), until=lambda n: n == 4, timeout=120,
                    what="the missed week's email and Slack message",
                )  # fmt: skip
                sent = await _rows(
                    database_url,
                    "SELECT week, late FROM review_weeks WHERE state = 'sent' ORDER BY week",
                )

    assert [row["late"] for row in sent] == [False, True]
    assert sent[0]["week"] == week["week"]
    assert len(box.messages) == 2  # one per week, whatever the replicas and restarts
    assert len(receiver.received) == 2
    assert first["To"] == "cmo@example.com, sales-lead@example.com"
    assert first["Subject"] == f"Monday review {week['week']}, {QUARTER}"
    assert box.messages[1]["Subject"].endswith("(late)")
    body = first.get_content()
    assert "Won: 1,700.00 USD of — target" in body
    assert "Not a fit (1)" in body
    assert NOTE in body  # the rep's note, read when the email was made
    assert f"https://metrics.example.com/review?week={week['week']}" in body
    message = json.loads(receiver.received[0].body)["text"]
    assert "SLA attainment: 85.7%" in message
    assert "&lt;https://metrics.example.com/review" not in message
    assert (
        f"<https://metrics.example.com/review?week={week['week']}|Open the whole pack>" in message
    )


async def test_several_missed_weeks_send_only_the_newest_late_and_skip_the_rest(
    database_url: str, topics: CommonSettings
) -> None:
    settings = review_settings(database_url, topics)
    async with running_metrics(settings, worker=False):
        pool = await create_pool(database_url, schema="metrics", max_size=2)
        try:
            worker = ReviewWorker(pool, settings, PlatformMetrics("metrics-test"))
            start = datetime(2026, 11, 4, 12, tzinfo=NOW.tzinfo)  # a Wednesday
            assert await worker.fire_due(start) is None  # the next Monday is scheduled
            # Nobody ran for three weeks; then a worker starts on a Thursday.
            later = start + timedelta(weeks=3, days=1)
            sent = await worker.fire_due(later)
            again = await worker.fire_due(later + timedelta(minutes=5))
            rows = await _rows(
                database_url, "SELECT week, state, late FROM review_weeks ORDER BY week"
            )
        finally:
            await pool.close()

    assert sent == "2026-W48"
    assert again is None
    assert [(row["week"], row["state"], row["late"]) for row in rows] == [
        ("2026-W46", "skipped", False),
        ("2026-W47", "skipped", False),
        ("2026-W48", "sent", True),
        ("2026-W49", "scheduled", False),
    ]


async def test_the_page_and_its_json_for_anyone_with_a_token(
    database_url: str, topics: CommonSettings
) -> None:
    settings = review_settings(database_url, topics)
    async with running_metrics(settings) as client:
        await produce(topics, three_campaigns(NOW))
        await _story_applied(client, 8)
        marketing = await issued_token(
            database_url, "metrics", topics.auth_secret, role="marketing"
        )
        rep = await issued_token(
            database_url, "metrics", topics.auth_secret, role="rep", subject="ada"
        )
        week = str(week_of_instant(utc_now(), "UTC"))

        unsigned = await client.get("/v1/review")
        as_rep = await client.get("/v1/review", headers={"authorization": f"Bearer {rep}"})
        past = await client.get(
            "/v1/review", params={"week": "2020-W10"}, headers={"authorization": f"Bearer {rep}"}
        )
        bad = await client.get(
            "/v1/review", params={"week": "2026-W60"}, headers={"authorization": f"Bearer {rep}"}
        )
        # Over https: the session cookies are Secure outside development.
        async with httpx.AsyncClient(
            transport=client._transport, base_url="https://metrics"
        ) as browser:
            signed_out = await browser.get("/review", params={"week": week}, follow_redirects=False)
            form = await browser.get("/review/sign-in", params={"next": f"/review?week={week}"})
            nonce = form.text.split('name="csrf" value="')[1].split('"')[0]
            signed_in = await browser.post(
                "/review/sign-in",
                data={"csrf": nonce, "token": marketing, "next": f"/review?week={week}"},
                follow_redirects=False,
            )
            page = await browser.get(signed_in.headers["location"])

    assert unsigned.status_code == 401
    assert as_rep.status_code == 200, as_rep.text
    view = as_rep.json()
    assert view["status"] == "preview"
    assert ReviewPack.model_validate(view["pack"]).week == week
    assert view["notes"] == {"not_a_fit": [NOTE]}
    assert past.status_code == 404
    assert bad.status_code == 422
    assert bad.json()["type"] == "/problems/invalid-week"
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == f"/review/sign-in?next=/review%3Fweek%3D{week}"
    assert signed_in.status_code == 303
    assert "httponly" in signed_in.headers["set-cookie"].lower()
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Preview: this pack is not sent yet" in page.text
    assert "=cmd|&#39; /C calc&#39;!A0" in page.text  # the note, escaped as text
    assert "Not a fit" in page.text
