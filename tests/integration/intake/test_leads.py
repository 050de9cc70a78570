"""POST /v1/leads against real PostgreSQL and the broker: qualification, dedupe, spam."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import asyncpg
import httpx

from funnel_common.events import (
    LEADS_TOPIC,
    LeadCapturedV2,
    LeadDisqualified,
    LeadMerged,
    LeadQualifiedV2,
    encode_event,
)
from funnel_common.settings import CommonSettings
from tests.integration.intake.conftest import IntakeFactory, events_on, imported, personal_of

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
    answer = await intake.post("/v1/leads", **imported(SENIOR_BUYER))

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "qualified"
    # senior_title 30 + company_size_200_plus 25 + core_market 10 + contact_request 10
    assert body["score"] == 75
    captured, qualified = await events_on(topics, LEADS_TOPIC, expect=2)
    assert isinstance(captured, LeadCapturedV2)
    assert isinstance(qualified, LeadQualifiedV2)
    assert captured.subject == qualified.subject == body["lead_id"]
    # The personal part travels sealed with the lead's own key: nothing of it in clear.
    assert "grace" not in encode_event(captured).decode().lower()
    assert "grace" not in encode_event(qualified).decode().lower()
    opened = await personal_of(topics, captured)
    assert opened.email == "grace.hopper@navy.example"
    assert (await personal_of(topics, qualified)).email == opened.email
    assert captured.data.attribution.source == "linkedin"
    assert captured.data.attribution.campaign == "q4-launch"
    assert captured.data.attribution.utm == {"utm_source": "linkedin", "utm_campaign": "q4-launch"}
    assert opened.extra == {"favourite_colour": "teal"}
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
    answer = await intake.post(
        "/v1/leads", **imported({**SENIOR_BUYER, "email": "spy@rivalfunnel.com"})
    )

    assert answer.json()["status"] == "disqualified"
    _, disqualified = await events_on(topics, LEADS_TOPIC, expect=2)
    assert isinstance(disqualified, LeadDisqualified)
    assert disqualified.data.reasons[0].rule == "competitor_domain"
    assert disqualified.data.rules_version == "2026-11-24.1"


async def test_a_second_touch_merges_and_rescoring_qualifies_the_lead(
    intake: httpx.AsyncClient, topics: CommonSettings, database_url: str
) -> None:
    first = await intake.post(
        "/v1/leads", **imported({"email": "ada@example.com", "phone": "+44 20 7946 0018"})
    )
    assert {k: v for k, v in first.json().items() if k != "receipt_id"} == {
        "lead_id": first.json()["lead_id"], "status": "captured", "score": 10,
    }  # fmt: skip

    # Same person, other case, demo request with a senior title: a touch, not a lead.
    second = await intake.post(
        "/v1/leads",
        **imported({**LANDING, "email": "ADA@example.com", "first_name": "Ada", "company": "AE",
                    "title": "CTO", "utm_campaign": "webinar-7"}),
    )  # fmt: skip
    # And by phone only, from yet another address, written nationally.
    third = await intake.post(
        "/v1/leads",
        **imported({"email": "ada.work@example.com", "phone": "020 7946-0018", "country": "GB"}),
    )

    lead_id = first.json()["lead_id"]
    assert second.json() == {
        "lead_id": lead_id, "status": "merged", "score": 70,
        "receipt_id": second.json()["receipt_id"],
    }  # fmt: skip
    assert second.json()["receipt_id"] != first.json()["receipt_id"]
    assert third.json()["lead_id"] == lead_id
    events = await events_on(topics, LEADS_TOPIC, expect=4)
    # One lead, one key, one partition: the order is the order things happened.
    assert [type(e) for e in events] == [LeadCapturedV2, LeadMerged, LeadQualifiedV2, LeadMerged]
    merges = [e for e in events if isinstance(e, LeadMerged)]
    assert [m.data.matched_on for m in merges] == ["email", "phone"]
    assert [m.data.form_id for m in merges] == [LANDING["form_id"], "default"]
    assert merges[0].data.attribution.campaign == "webinar-7"
    qualified = next(e for e in events if isinstance(e, LeadQualifiedV2))
    assert qualified.data.score == 70
    assert qualified.data.form_type == "demo_request"
    # Sealed with the lead's one key, with what the touches told (the first address).
    assert (await personal_of(topics, qualified)).model_dump(exclude_defaults=True) == {
        "email": "ada@example.com", "phone": "+442079460018", "first_name": "Ada",
        "title": "CTO",
    }  # fmt: skip
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

    first = await intake.post("/v1/leads", **imported({"email": "ada@example.com"}))
    # Signed a second later: the same body and time again would be a replayed signature.
    later = int(time.time()) + 1
    second = await intake.post("/v1/leads", **imported({"email": "ada@example.com"}, at=later))

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

    subdomain = await intake.post("/v1/leads", json={"email": "y@eu.mailinator.com"})

    answers = [honeypot, too_fast, disposable, human, subdomain]
    # Anonymous posts: one receipt each, the same answer for spam as for a person.
    assert {a.json()["status"] for a in answers} == {"received"}
    events = await events_on(topics, LEADS_TOPIC, expect=5)
    assert all(isinstance(e, LeadCapturedV2) for e in events)
    reasons = {
        (await personal_of(topics, e)).email: e.data.spam_reasons
        for e in events
        if isinstance(e, LeadCapturedV2)
    }
    assert reasons == {
        "grace.hopper@navy.example": ["honeypot"],
        "a@b.example": ["too_fast"],
        "x@mailinator.com": ["disposable_domain"],
        "h@b.example": [],
        "y@eu.mailinator.com": ["disposable_domain"],
    }


async def test_an_anonymous_post_gets_the_same_answer_whether_the_person_is_known_or_not(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    await intake.post("/v1/leads", **imported({**SENIOR_BUYER, "email": "known@example.com"}))

    known = await intake.post("/v1/leads", json={**SENIOR_BUYER, "email": "known@example.com"})
    new = await intake.post("/v1/leads", json={**SENIOR_BUYER, "email": "new@example.com"})

    assert (known.status_code, new.status_code) == (202, 202)
    assert known.json().keys() == new.json().keys() == {"receipt_id", "status"}
    assert known.json()["status"] == new.json()["status"] == "received"
    assert known.headers.keys() == new.headers.keys()
    connection = await asyncpg.connect(database_url)
    try:
        lead_ids = {
            str(r["lead_id"]) for r in await connection.fetch("SELECT lead_id FROM intake.leads")
        }
        # A receipt is the submission's id: support can find it, nobody can use it.
        touched = await connection.fetchval(
            "SELECT count(*) FROM intake.touches WHERE submission_id = $1::uuid",
            known.json()["receipt_id"],
        )
        captured = await connection.fetchval(
            "SELECT count(*) FROM intake.leads WHERE submission_id = $1::uuid",
            new.json()["receipt_id"],
        )
    finally:
        await connection.close()
    assert {known.json()["receipt_id"], new.json()["receipt_id"]}.isdisjoint(lead_ids)
    assert (touched, captured) == (1, 1)


async def test_lookalike_emails_and_reformatted_phones_are_one_person(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    first = await intake.post(
        "/v1/leads", **imported({"email": "ada@example.com", "phone": "+1 (555) 010-4515"})
    )
    fullwidth = await intake.post(
        "/v1/leads", **imported({"email": "\uff41\uff44\uff41@example.com"})
    )
    by_phone = await intake.post(
        "/v1/leads", **imported({"email": "ada.home@example.com", "phone": "1 555 010 4515"})
    )

    lead_id = first.json()["lead_id"]
    assert [fullwidth.json()["lead_id"], by_phone.json()["lead_id"]] == [lead_id, lead_id]
    assert [fullwidth.json()["status"], by_phone.json()["status"]] == ["merged", "merged"]
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetchrow("SELECT email, phone FROM intake.leads")
    finally:
        await connection.close()
    assert dict(stored) == {"email": "ada@example.com", "phone": "+15550104515"}


async def test_a_signed_import_keeps_the_leads_own_capture_time_and_a_form_post_cannot(
    intake: httpx.AsyncClient, topics: CommonSettings
) -> None:
    last_year = "2025-03-14T10:00:00+01:00"

    old = await intake.post(
        "/v1/leads", **imported({"email": "old@example.com", "captured_at": last_year})
    )
    anonymous = await intake.post(
        "/v1/leads", json={"email": "a@example.com", "captured_at": last_year}
    )
    future = await intake.post(
        "/v1/leads", **imported({"email": "f@example.com", "captured_at": "2999-01-01T00:00:00Z"})
    )
    ancient = await intake.post(
        "/v1/leads", **imported({"email": "g@example.com", "captured_at": "1969-12-31T23:59:59Z"})
    )

    assert old.status_code == 202, old.text
    refusals = {
        name: (
            answer.status_code,
            answer.json()["errors"][0]["field"],
            answer.json()["errors"][0]["code"],
        )
        for name, answer in {"anonymous": anonymous, "future": future, "ancient": ancient}.items()
    }
    assert refusals == {
        "anonymous": (422, "captured_at", "signed_only"),
        "future": (422, "captured_at", "in_the_future"),
        "ancient": (422, "captured_at", "value_error"),
    }
    (captured,) = await events_on(topics, LEADS_TOPIC, expect=1)
    assert isinstance(captured, LeadCapturedV2)
    assert captured.time == datetime(2025, 3, 14, 9, tzinfo=UTC)
