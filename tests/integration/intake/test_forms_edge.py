"""The HTTP edge of POST /v1/leads: plain forms, CORS, limits, idempotency, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx

from tests.integration.intake.conftest import IntakeFactory

LANDING = {"form_id": "landing-page", "form_key": "pk_landing_7d1f3c"}
PAGE = "http://127.0.0.1:8080"


async def _lead_count(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM intake.leads")
    finally:
        await connection.close()
    return count


async def test_a_plain_form_post_redirects_to_its_thank_you_page(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    form = {**LANDING, "email": "ada@example.com", "first_name": "Ada", "company": "AE",
            "utm_source": "newsletter", "phone": ""}  # fmt: skip

    answer = await intake.post("/v1/leads", data=form, headers={"origin": PAGE})
    chosen = await intake.post(
        "/v1/leads",
        data={**form, "email": "b@example.com", "thank_you_url": f"{PAGE}/thanks.html"},
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "http://localhost:8080/thanks.html"
    assert chosen.headers["location"] == f"{PAGE}/thanks.html"
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert await _lead_count(database_url) == 2


async def test_a_redirect_off_the_forms_list_is_refused(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    for target in (
        "https://evil.example/phish",
        f"{PAGE}/thanks.html.evil.example",
        "//evil.example",
    ):
        answer = await intake.post(
            "/v1/leads",
            data={**LANDING, "email": "a@example.com", "first_name": "A", "company": "C",
                  "thank_you_url": target},
        )  # fmt: skip

        assert answer.status_code == 422, target
        assert answer.json()["errors"][0]["field"] == "thank_you_url"
        assert "location" not in answer.headers
    assert await _lead_count(database_url) == 0


async def test_cors_answers_only_the_forms_origins(intake: httpx.AsyncClient) -> None:
    preflight = {"access-control-request-method": "POST"}

    allowed = await intake.options("/v1/leads", headers={"origin": PAGE, **preflight})
    foreign = await intake.options(
        "/v1/leads", headers={"origin": "https://evil.example", **preflight}
    )
    foreign_post = await intake.post(
        "/v1/leads",
        json={**LANDING, "email": "a@example.com", "first_name": "A", "company": "C"},
        headers={"origin": "https://evil.example"},
    )

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    assert foreign_post.status_code == 403
    assert foreign_post.json()["type"] == "/problems/origin-not-allowed"
    assert "access-control-allow-origin" not in foreign_post.headers


async def test_validation_names_each_field_and_why(intake: httpx.AsyncClient) -> None:
    missing = await intake.post("/v1/leads", json={**LANDING, "email": "a@example.com"})
    wrong_key = await intake.post(
        "/v1/leads", json={**LANDING, "form_key": "pk_other", "email": "a@example.com"}
    )
    unknown_form = await intake.post(
        "/v1/leads", json={"form_id": "nope", "email": "a@example.com"}
    )
    bad_values = await intake.post(
        "/v1/leads",
        json={"email": "a@example.com", "phone": "call me", "country": "USA",
              "company_size": -1, "first_name": "x" * 201},
    )  # fmt: skip
    too_many_extras = await intake.post(
        "/v1/leads", json={"email": "a@example.com", **{f"f{i}": "v" for i in range(21)}}
    )
    wrong_type = await intake.post(
        "/v1/leads", content=b"email=a", headers={"content-type": "text/plain"}
    )

    def fields(answer: httpx.Response) -> dict[str, str]:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        return {error["field"]: error["code"] for error in answer.json()["errors"]}

    assert fields(missing) == {"first_name": "missing", "company": "missing"}
    assert fields(wrong_key) == {"form_key": "form_key"}
    assert fields(unknown_form) == {"form_id": "unknown_form"}
    assert fields(bad_values) == {
        "phone": "value_error",
        "country": "string_pattern_mismatch",
        "company_size": "greater_than_equal",
        "first_name": "string_too_long",
    }
    assert fields(too_many_extras) == {"extra": "too_long"}
    assert wrong_type.status_code == 415


async def test_a_body_over_the_limit_gets_413(start_intake: IntakeFactory) -> None:
    intake = await start_intake(max_body_bytes=2048)

    declared = await intake.post("/v1/leads", json={"email": "a@example.com", "note": "x" * 4000})

    async def streamed_body() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "note": "'
        yield b"x" * 4000
        yield b'"}'

    streamed = await intake.post(
        "/v1/leads", content=streamed_body(), headers={"content-type": "application/json"}
    )

    assert declared.status_code == 413
    assert declared.json()["type"] == "/problems/payload-too-large"
    assert streamed.status_code == 413


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    start_intake: IntakeFactory, database_url: str
) -> None:
    intake = await start_intake(rate_limit_per_client=2, rate_limit_window_seconds=60)

    answers = [
        await intake.post("/v1/leads", json={"email": f"p{i}@example.com"}) for i in range(3)
    ]

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].headers["retry-after"] == "60"
    assert answers[2].json()["type"] == "/problems/rate-limited"
    assert await _lead_count(database_url) == 2


async def test_a_retried_post_with_an_idempotency_key_returns_the_first_answer(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    key = {"idempotency-key": "retry-7f3a"}
    lead = {"email": "ada@example.com"}

    first = await intake.post("/v1/leads", json=lead, headers=key)
    retry = await intake.post("/v1/leads", json=lead, headers=key)
    other_body = await intake.post("/v1/leads", json={"email": "bob@example.com"}, headers=key)
    form_first = await intake.post(
        "/v1/leads",
        data={**LANDING, "email": "c@example.com", "first_name": "C", "company": "C"},
        headers={"idempotency-key": "form-1"},
    )
    form_retry = await intake.post(
        "/v1/leads",
        data={**LANDING, "email": "c@example.com", "first_name": "C", "company": "C"},
        headers={"idempotency-key": "form-1"},
    )

    assert retry.status_code == first.status_code == 202
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert other_body.status_code == 409
    assert form_retry.status_code == form_first.status_code == 303
    assert form_retry.headers["location"] == form_first.headers["location"]
    assert await _lead_count(database_url) == 2


async def test_the_rules_in_force_are_published_with_their_version(
    intake: httpx.AsyncClient,
) -> None:
    answer = await intake.get("/v1/qualification/rules")

    assert answer.status_code == 200
    rules = answer.json()
    assert rules["version"] == "2026-11-24.1"
    assert rules["mql_threshold"] == 50
    assert {rule["rule"] for rule in rules["disqualifiers"]} == {
        "competitor_domain",
        "student_domain",
    }


async def test_values_the_event_catalogue_cannot_carry_are_422_not_500(
    intake: httpx.AsyncClient,
) -> None:
    long_email = "a" * 64 + "@" + "b" * 130 + ".example"
    too_long_email = await intake.post("/v1/leads", json={"email": long_email})
    long_source = await intake.post(
        "/v1/leads", json={"email": "a@b.example", "utm_source": "s" * 81}
    )
    deeply_nested = await intake.post(
        "/v1/leads", content=b"[" * 20_000, headers={"content-type": "application/json"}
    )
    nul = await intake.post("/v1/leads", data={"email": "a@b.example", "company": "A\x00B"})

    assert [a.status_code for a in (too_long_email, long_source, deeply_nested, nul)] == [422] * 4
    assert too_long_email.json()["errors"][0]["field"] == "email"
    assert long_source.json()["errors"][0]["field"] == "utm_source"
    assert nul.json()["errors"][0]["field"] == "company"
