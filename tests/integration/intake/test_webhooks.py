"""Signed CRM and billing webhooks: outcomes flow back with the lead's attribution."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

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
from tests.integration.intake.conftest import BILLING_SECRET, CRM_SECRET, events_on, signed

BACKDATED = "2026-10-02T09:30:00Z"


def deal(event: str, webhook_id: str, **fields: object) -> dict[str, object]:
    return {"webhook_id": webhook_id, "event": event, "deal_id": "D-1", **fields}


async def test_a_deal_linked_by_email_carries_the_leads_source_to_won(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    lead = await intake.post(
        "/v1/leads", json={"email": "ada@example.com", "utm_source": "google", "campaign": "q4"}
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


async def test_illegal_deal_transitions_are_409_and_reopening_is_allowed(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    await intake.post("/v1/deals", **signed(deal("opened", "a", amount_cents=500), CRM_SECRET))
    no_reason = await intake.post("/v1/deals", **signed(deal("lost", "b"), CRM_SECRET))
    lost = await intake.post(
        "/v1/deals", **signed(deal("lost", "c", reason="no_budget"), CRM_SECRET)
    )
    win_lost = await intake.post("/v1/deals", **signed(deal("won", "d"), CRM_SECRET))
    never_opened = await intake.post(
        "/v1/deals", **signed({**deal("updated", "e"), "deal_id": "D-9"}, CRM_SECRET)
    )
    reopened = await intake.post("/v1/deals", **signed(deal("opened", "f"), CRM_SECRET))
    won = await intake.post("/v1/deals", **signed(deal("won", "g"), CRM_SECRET))

    assert no_reason.status_code == 422
    assert lost.status_code == 200
    assert win_lost.status_code == 409
    assert win_lost.json()["type"] == "/problems/conflict"
    assert never_opened.status_code == 409
    assert (reopened.json()["state"], won.json()["state"]) == ("open", "won")
    events = await events_on(topics, DEALS_TOPIC, expect=4)
    assert [type(e) for e in events] == [DealOpened, DealLost, DealOpened, DealWon]
    assert isinstance(events[1], DealLost)
    assert events[1].data.reason == "no_budget"
    assert events[1].data.attribution.source == "unattributed"


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

    not_active = await intake.post(
        "/v1/accounts/events", **signed(account("churned", "b0"), BILLING_SECRET)
    )
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

    assert not_active.status_code == 409
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
    lead = await intake.post("/v1/leads", json={"email": "bo@example.com", "source": "events"})
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
