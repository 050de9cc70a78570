"""The walking skeleton's slice: a lead in, one event out, one count up."""

from __future__ import annotations

import asyncpg
import pytest

from tests.helpers import eventually
from tests.platform import Platform

LEAD = {"email": "Ada@Example.com", "source": "webinar"}


@pytest.mark.both_brokers
async def test_a_posted_lead_is_counted_exactly_once(platform: Platform, database_url: str) -> None:
    before = await platform.metric("funnel_leads_captured_total")

    answer = await platform.intake.post("/v1/leads", json=LEAD)

    assert answer.status_code == 202
    assert answer.json()["status"] == "received"  # an anonymous post's receipt
    await platform.wait_for_metric("funnel_leads_captured_total", (before or 0) + 1)
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetchrow("SELECT email, source FROM intake.leads")
        seen_by_handoff = await eventually(
            lambda: connection.fetchval("SELECT count(*) FROM handoff.leads"),
            until=lambda n: n == 1,
            what="handoff recorded the lead",
        )
    finally:
        await connection.close()
    assert dict(stored) == {"email": "ada@example.com", "source": "webinar"}
    assert seen_by_handoff == 1


async def test_every_service_serves_probes_metrics_and_docs(platform: Platform) -> None:
    for client in (platform.intake, platform.handoff, platform.metrics):
        healthz = await client.get("/healthz")
        readyz = await client.get("/readyz")
        metrics = await client.get("/metrics")
        docs = await client.get("/docs")
        openapi = await client.get("/openapi.json")

        assert healthz.json() == {"status": "ok"}
        assert readyz.status_code == 200
        assert readyz.json()["checks"] == {"postgres": "ok"}
        assert "funnel_http_requests_total" in metrics.text
        assert "funnel_outbox_backlog" not in metrics.text
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        assert openapi.json()["info"]["title"].startswith("Shared Funnel")


async def test_every_worker_serves_probes_and_its_own_metrics_but_no_api(
    platform: Platform,
) -> None:
    for name, client in platform.workers.items():
        healthz = await client.get("/healthz")
        readyz = await client.get("/readyz")
        metrics = await client.get("/metrics")
        docs = await client.get("/docs")

        assert healthz.json() == {"status": "ok"}, name
        assert readyz.status_code == 200
        assert readyz.json()["checks"]["broker"] == "ok"
        assert readyz.json()["checks"]["outbox_relay"] in ("leader", "standby")
        assert "funnel_outbox_backlog" in metrics.text
        assert docs.status_code == 404


async def test_http_metrics_use_the_route_template(platform: Platform) -> None:
    await platform.intake.post("/v1/leads", json=LEAD)
    await platform.intake.get("/no/such/path/ada@example.com")

    text = (await platform.intake.get("/metrics")).text

    assert 'route="/v1/leads",service="lead-intake",status="202"' in text
    assert 'route="unmatched"' in text
    assert "ada@example.com" not in text


async def test_bad_input_gets_a_precise_422_problem(platform: Platform) -> None:
    answer = await platform.intake.post(
        "/v1/leads", json={"email": "not-an-email", "source": "web\u0000inar", "shoe_size": 9}
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["type"] == "/problems/validation"
    fields = {error["field"]: error["code"] for error in body["errors"]}
    assert fields == {
        "email": "value_error",
        "source": "value_error",
        # Unknown fields are kept in a bounded `extra` of short texts (issue 3).
        "extra.shoe_size": "string_type",
    }
    assert "not-an-email" not in answer.text


async def test_malformed_json_is_a_422_not_a_500(platform: Platform) -> None:
    answer = await platform.intake.post(
        "/v1/leads", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert answer.status_code == 422
    assert answer.json()["type"] == "/problems/validation"
