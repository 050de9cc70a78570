"""Signed CRM and billing webhooks: outcomes flow back with the lead's attribution."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
)
from funnel_common.settings import CommonSettings
from tests.helpers import eventually
from tests.integration.intake.conftest import (
    BILLING_SECRET,
    CRM_SECRET,
    IntakeFactory,
    events_on,
    imported,
    signed,
)

BACKDATED = "2026-10-02T09:30:00Z"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "lead-intake.md"


def deal(event: str, webhook_id: str, **fields: object) -> dict[str, object]:
    return {"webhook_id": webhook_id, "event": event, "deal_id": "D-1", **fields}


async def test_a_deal_linked_by_email_carries_the_leads_source_to_won(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    lead = await intake.post(
        "/v1/leads",
        **imported({"email": "ada@example.com", "utm_source": "google", "campaign": "q4"}),
    )

    opened = await intake.post(
        "/v1/deals",
        **signed(
            deal("opened", "w1", email="Ada@Example.com", amount_cents=1_200_000,
                 expected_close_date="2026-12-15", occurred_at=BACKDATED),
            CRM_SECRET,
        ),
    )  # fmt: skip
    updated = await intake.post(
        "/v1/deals",
        **signed(deal("updated", "w2", amount_cents=1_500_000, stage="proposal"), CRM_SECRET),
    )
    won = await intake.post(
        "/v1/deals", **signed(deal("won", "w3", closed_on="2026-11-20"), CRM_SECRET)
    )

    assert [a.json()["state"] for a in (opened, updated, won)] == ["open", "open", "won"]
    events = await events_on(topics, DEALS_TOPIC, expect=3)
    assert [type(e) for e in events] == [DealOpened, DealUpdated, DealWon]
    first, _, last = events
    assert first.time == datetime(2026, 10, 2, 9, 30, tzinfo=UTC)
    assert isinstance(last, DealWon)
    assert str(last.data.lead_id) == lead.json()["lead_id"]
    assert last.data.attribution.source == "google"
    assert last.data.attribution.campaign == "q4"
    assert last.data.amount_cents == 1_500_000
    assert last.data.stage == "closed_won"
    assert last.data.closed_on == date(2026, 11, 20)
    assert last.data.expected_close_date == date(2026, 12, 15)
    assert last.data.currency == "USD"


def _docs_example() -> list[dict[str, Any]]:
    """The deliveries of docs/lead-intake.md's out-of-order example, in its order."""
    page = DOCS.read_text()
    section = page[page.index("### Late, duplicate and out-of-order deliveries") :]
    block = section[section.index("```json\n") + len("```json\n") : section.index("\n```\n")]
    return [json.loads(line) for line in block.splitlines()]


async def test_a_win_delivered_before_its_opening_is_recorded_and_the_deal_ends_won(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    # The docs' example, as written there (docs/lead-intake.md).
    won, opened, late_update = [
        await intake.post("/v1/deals", **signed(delivery, CRM_SECRET))
        for delivery in _docs_example()
    ]

    assert [a.status_code for a in (won, opened, late_update)] == [200, 200, 200]
    assert [a.json()["state"] for a in (won, opened, late_update)] == ["won", "won", "won"]
    events = await events_on(topics, DEALS_TOPIC, expect=3)
    assert [type(e) for e in events] == [DealWon, DealOpened, DealUpdated]
    won_event, _, update = events
    assert isinstance(won_event, DealWon)
    assert won_event.data.closed_on == date(2026, 11, 20)
    assert (won_event.data.delivery_id, won_event.data.fields_set) == ("crm-2", ["stage"])
    assert isinstance(update, DealUpdated)
    # The last known amount is the won value; the update changed the amount, not the status.
    assert (update.data.amount_cents, update.data.stage) == (1_500_000, "closed_won")
    assert update.data.fields_set == ["amount_cents"]


async def test_a_lost_deal_can_be_reopened_and_won_and_a_lost_needs_a_reason(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    await intake.post("/v1/deals", **signed(deal("opened", "a", amount_cents=500), CRM_SECRET))
    no_reason = await intake.post("/v1/deals", **signed(deal("lost", "b"), CRM_SECRET))
    lost = await intake.post(
        "/v1/deals", **signed(deal("lost", "c", reason="no_budget"), CRM_SECRET)
    )
    reopened = await intake.post("/v1/deals", **signed(deal("opened", "f"), CRM_SECRET))
    won = await intake.post("/v1/deals", **signed(deal("won", "g"), CRM_SECRET))

    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "reason"
    assert [a.json()["state"] for a in (lost, reopened, won)] == ["lost", "open", "won"]
    events = await events_on(topics, DEALS_TOPIC, expect=4)
    assert [type(e) for e in events] == [DealOpened, DealLost, DealOpened, DealWon]
    assert isinstance(events[1], DealLost)
    assert events[1].data.reason == "no_budget"
    assert events[1].data.attribution.source == "unattributed"
    assert isinstance(events[3], DealWon)
    assert events[3].data.amount_cents == 500


async def test_money_is_a_json_integer_and_a_time_outside_the_window_is_a_422(
    intake: httpx.AsyncClient,
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "true": {"amount_cents": True},
        "text": {"amount_cents": "100"},
        "float": {"amount_cents": 100.5},
        "year 1": {"amount_cents": 1, "occurred_at": "0001-01-01T00:00:00+01:00"},
        "year 9999": {"amount_cents": 1, "occurred_at": "9999-12-31T23:30:00-01:00"},
        "1969": {"amount_cents": 1, "occurred_at": "1969-12-31T23:59:59Z"},
    }
    answers = {
        name: await intake.post(
            "/v1/deals", **signed(deal("opened", f"m-{name}", **fields), CRM_SECRET)
        )
        for name, fields in cases.items()
    }

    refused = {
        name: (answer.status_code, answer.json()["errors"][0]["field"])
        for name, answer in answers.items()
    }
    assert refused == {
        "true": (422, "amount_cents"),
        "text": (422, "amount_cents"),
        "float": (422, "amount_cents"),
        "year 1": (422, "occurred_at"),
        "year 9999": (422, "occurred_at"),
        "1969": (422, "occurred_at"),
    }


async def test_another_currency_is_a_precise_422(intake: httpx.AsyncClient) -> None:
    answer = await intake.post(
        "/v1/deals", **signed(deal("opened", "x", amount_cents=5, currency="EUR"), CRM_SECRET)
    )

    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"field": "currency", "message": "must be the reporting currency USD",
         "code": "currency_mismatch"}
    ]  # fmt: skip


async def test_bad_stale_and_replayed_signatures_are_401_and_a_redelivery_changes_nothing(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    body = deal("opened", "w-1", amount_cents=100)
    good = signed(body, CRM_SECRET)

    unsigned = await intake.post("/v1/deals", json=body)
    wrong_secret = await intake.post("/v1/deals", **signed(body, BILLING_SECRET))
    stale = await intake.post("/v1/deals", **signed(body, CRM_SECRET, at=int(time.time()) - 301))
    first = await intake.post("/v1/deals", **good)
    replayed = await intake.post("/v1/deals", **good)
    tampered = await intake.post(
        "/v1/deals", content=good["content"].replace(b"100", b"999"), headers=good["headers"]
    )
    redelivered = await intake.post(
        "/v1/deals", **signed(body, CRM_SECRET, at=int(time.time()) - 5)
    )

    assert [a.status_code for a in (unsigned, wrong_secret, stale)] == [401, 401, 401]
    assert stale.json()["detail"] == "stale signature"
    assert first.json()["status"] == "applied"
    assert replayed.status_code == 401
    assert replayed.json()["detail"] == "replayed signature"
    assert tampered.status_code == 401
    assert redelivered.status_code == 200
    assert redelivered.json() == {"status": "duplicate", "subject": "D-1", "state": "open"}
    events = await events_on(topics, DEALS_TOPIC, expect=1)
    assert len(events) == 1


async def test_billing_events_activate_change_and_churn_an_account(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    await intake.post("/v1/leads", json={"email": "ada@example.com", "utm_source": "partner"})
    await intake.post(
        "/v1/deals",
        **signed(deal("opened", "d1", amount_cents=9, email="ada@example.com"), CRM_SECRET),
    )

    def account(event: str, webhook_id: str, **fields: object) -> dict[str, object]:
        return {"webhook_id": webhook_id, "event": event, "account_id": "A-1", **fields}

    activated = await intake.post(
        "/v1/accounts/events",
        **signed(account("activated", "b1", arr_cents=1_200_000, deal_id="D-1",
                         occurred_at=BACKDATED), BILLING_SECRET),
    )  # fmt: skip
    changed = await intake.post(
        "/v1/accounts/events",
        **signed(account("arr_changed", "b2", arr_cents=900_000), BILLING_SECRET),
    )
    churned = await intake.post(
        "/v1/accounts/events", **signed(account("churned", "b3"), BILLING_SECRET)
    )
    signed_by_crm = await intake.post(
        "/v1/accounts/events", **signed(account("activated", "b4", arr_cents=1), CRM_SECRET)
    )

    assert [a.json()["state"] for a in (activated, changed, churned)] == [
        "active",
        "active",
        "churned",
    ]
    assert signed_by_crm.status_code == 401
    events = await events_on(topics, ACCOUNTS_TOPIC, expect=3)
    assert [type(e) for e in events] == [AccountActivated, AccountArrChanged, AccountChurned]
    activation, change, _ = events
    assert isinstance(activation, AccountActivated)
    assert isinstance(change, AccountArrChanged)
    assert activation.time == datetime(2026, 10, 2, 9, 30, tzinfo=UTC)
    assert activation.data.arr_cents == 1_200_000
    assert activation.data.attribution is not None
    assert activation.data.attribution.source == "partner"
    assert change.data.arr_cents == 900_000


async def test_a_deal_linked_by_lead_id_must_name_a_known_lead(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    lead = await intake.post(
        "/v1/leads", **imported({"email": "bo@example.com", "source": "events"})
    )
    lead_id = lead.json()["lead_id"]

    nobody = "00000000-0000-4000-8000-000000000000"
    unknown = await intake.post(
        "/v1/deals", **signed(deal("opened", "u1", amount_cents=1, lead_id=nobody), CRM_SECRET)
    )
    linked = await intake.post(
        "/v1/deals", **signed(deal("opened", "u2", amount_cents=1, lead_id=lead_id), CRM_SECRET)
    )

    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "lead_id"
    assert linked.status_code == 200
    (opened,) = await events_on(topics, DEALS_TOPIC, expect=1)
    assert isinstance(opened, DealOpened)
    assert str(opened.data.lead_id) == lead_id
    assert opened.data.attribution.source == "events"
    metrics = (await intake.get("/metrics")).text
    assert 'funnel_intake_webhooks_total{integration="crm",outcome="applied"} 1.0' in metrics


async def test_a_signature_stays_refused_as_a_replay_for_as_long_as_it_is_valid(
    start_intake: IntakeFactory,
) -> None:
    intake = await start_intake(signature_tolerance_seconds=2)

    async def clock() -> float:
        return time.time()

    # Early in a second, a signature dated as far ahead as the tolerance allows: it is
    # accepted until the clock's whole seconds pass its timestamp + tolerance.
    start = await eventually(clock, until=lambda now: now % 1 < 0.3, what="a fresh second")
    second = int(start)
    ahead = signed(deal("opened", "r-1", amount_cents=1), CRM_SECRET, at=second + 2)
    first = await intake.post("/v1/deals", **ahead)
    # Late in the last second in which it is still valid.
    await eventually(
        clock, until=lambda now: now >= second + 4.7, timeout=10, what="its last second"
    )
    replayed = await intake.post("/v1/deals", **ahead)

    assert first.status_code == 200, first.text
    assert int(time.time()) == second + 4, "the machine was too slow to test the last second"
    assert replayed.status_code == 401
    assert replayed.json()["detail"] == "replayed signature"


async def test_an_account_event_for_an_account_never_activated_is_recorded(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    churned = await intake.post(
        "/v1/accounts/events",
        **signed({"webhook_id": "b-9", "event": "churned", "account_id": "A-9"}, BILLING_SECRET),
    )

    assert churned.status_code == 200
    assert churned.json() == {"status": "applied", "subject": "A-9", "state": "churned"}
    (event,) = await events_on(topics, ACCOUNTS_TOPIC, expect=1)
    assert isinstance(event, AccountChurned)
    assert event.data.delivery_id == "b-9"
