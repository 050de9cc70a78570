"""POST /v1/leads against real PostgreSQL and the broker: qualification, dedupe, spam."""

from __future__ import annotations

import time

import asyncpg
import httpx

from funnel_common.events import (
    LEADS_TOPIC,
    LeadCaptured,
    LeadDisqualified,
    LeadMerged,
    LeadQualified,
)
from funnel_common.settings import CommonSettings
from tests.integration.intake.conftest import IntakeFactory, events_on

SENIOR_BUYER = {
    "email": "Grace.Hopper@Navy.example",
    "first_name": "Grace",
    "company": "Navy",
    "title": "VP Engineering",
    "company_size": 500,
    "country": "us",
    "utm_source": "linkedin",
    "utm_campaign": "q4-launch",
    "favourite_colour": "teal",
}
LANDING = {"form_id": "landing-page", "form_key": "pk_landing_7d1f3c"}


async def test_a_fitting_lead_is_captured_and_qualified_with_its_reasons(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    answer = await intake.post("/v1/leads", json=SENIOR_BUYER)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "qualified"
    # senior_title 30 + company_size_200_plus 25 + core_market 10 + contact_request 10
    assert body["score"] == 75
    captured, qualified = await events_on(topics, LEADS_TOPIC, expect=2)
    assert isinstance(captured, LeadCaptured)
    assert isinstance(qualified, LeadQualified)
    assert captured.subject == qualified.subject == body["lead_id"]
    assert captured.data.profile.email == "grace.hopper@navy.example"
    assert captured.data.attribution.source == "linkedin"
    assert captured.data.attribution.campaign == "q4-launch"
    assert captured.data.attribution.utm == {"utm_source": "linkedin", "utm_campaign": "q4-launch"}
    assert captured.data.extra == {"favourite_colour": "teal"}
    assert qualified.data.score == 75
    assert [r.rule for r in qualified.data.reasons] == [
        "senior_title",
        "company_size_200_plus",
        "core_market",
        "contact_request",
    ]
    assert qualified.data.rules_version == "2026-11-24.1"
    assert qualified.data.form_type == "contact"
    assert qualified.data.profile.country == "US"
    metrics = (await intake.get("/metrics")).text
    assert 'funnel_intake_submissions_total{form="default",outcome="qualified"} 1.0' in metrics
    assert "navy.example" not in metrics.lower()


async def test_a_competitor_is_disqualified_and_says_why(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    answer = await intake.post("/v1/leads", json={**SENIOR_BUYER, "email": "spy@rivalfunnel.com"})

    assert answer.json()["status"] == "disqualified"
    _, disqualified = await events_on(topics, LEADS_TOPIC, expect=2)
    assert isinstance(disqualified, LeadDisqualified)
    assert disqualified.data.reasons[0].rule == "competitor_domain"
    assert disqualified.data.rules_version == "2026-11-24.1"


async def test_a_second_touch_merges_and_rescoring_qualifies_the_lead(
    intake: httpx.AsyncClient, topics: CommonSettings, database_url: str
) -> None:
    first = await intake.post(
        "/v1/leads", json={"email": "ada@example.com", "phone": "+44 20 7946 0018"}
    )
    assert first.json() == {"lead_id": first.json()["lead_id"], "status": "captured", "score": 10}

    # Same person, other case, demo request with a senior title: a touch, not a lead.
    second = await intake.post(
        "/v1/leads",
        json={**LANDING, "email": "ADA@example.com", "first_name": "Ada", "company": "AE",
              "title": "CTO", "utm_campaign": "webinar-7"},
    )  # fmt: skip
    # And by phone only, from yet another address.
    third = await intake.post(
        "/v1/leads", json={"email": "ada.work@example.com", "phone": "+44 (20) 7946-0018"}
    )

    lead_id = first.json()["lead_id"]
    assert second.json() == {"lead_id": lead_id, "status": "merged", "score": 70}
    assert third.json()["lead_id"] == lead_id
    events = await events_on(topics, LEADS_TOPIC, expect=4)
    # One lead, one key, one partition: the order is the order things happened.
    assert [type(e) for e in events] == [LeadCaptured, LeadMerged, LeadQualified, LeadMerged]
    merges = [e for e in events if isinstance(e, LeadMerged)]
    assert [m.data.matched_on for m in merges] == ["email", "phone"]
    assert [m.data.form_id for m in merges] == [LANDING["form_id"], "default"]
    assert merges[0].data.attribution.campaign == "webinar-7"
    qualified = next(e for e in events if isinstance(e, LeadQualified))
    assert qualified.data.score == 70
    assert qualified.data.form_type == "demo_request"
    connection = await asyncpg.connect(database_url)
    try:
        leads = await connection.fetchval("SELECT count(*) FROM intake.leads")
        touches = await connection.fetchval("SELECT count(*) FROM intake.touches")
    finally:
        await connection.close()
    assert (leads, touches) == (1, 2)


async def test_outside_the_dedupe_window_a_returning_person_is_a_new_lead(
    start_intake: IntakeFactory,
) -> None:
    intake = await start_intake(dedupe_window_days=0)

    first = await intake.post("/v1/leads", json={"email": "ada@example.com"})
    second = await intake.post("/v1/leads", json={"email": "ada@example.com"})

    assert second.json()["status"] == "captured"
    assert second.json()["lead_id"] != first.json()["lead_id"]


async def test_spam_is_recorded_as_spam_not_dropped_and_not_qualified(
    start_intake: IntakeFactory, topics: CommonSettings
) -> None:
    intake = await start_intake(min_fill_seconds=30)

    honeypot = await intake.post("/v1/leads", json={**SENIOR_BUYER, "website": "http://x.biz"})
    too_fast = await intake.post(
        "/v1/leads", json={"email": "a@b.example", "form_started_at": time.time() - 1}
    )
    disposable = await intake.post("/v1/leads", json={"email": "x@mailinator.com"})
    human = await intake.post(
        "/v1/leads", json={"email": "h@b.example", "form_started_at": time.time() - 60}
    )

    assert [a.json()["status"] for a in (honeypot, too_fast, disposable, human)] == [
        "spam",
        "spam",
        "spam",
        "captured",
    ]
    events = await events_on(topics, LEADS_TOPIC, expect=4)
    assert all(isinstance(e, LeadCaptured) for e in events)
    reasons = {e.subject: e.data.spam_reasons for e in events if isinstance(e, LeadCaptured)}
    assert reasons == {
        honeypot.json()["lead_id"]: ["honeypot"],
        too_fast.json()["lead_id"]: ["too_fast"],
        disposable.json()["lead_id"]: ["disposable_domain"],
        human.json()["lead_id"]: [],
    }
