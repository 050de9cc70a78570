"""A landing page works from any port of this machine in development (origins stay exact
elsewhere), and a refused browser post is a page a person can read."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from funnel_common.settings import CommonSettings
from tests.integration.intake.conftest import intake_settings, running_intake

LANDING = {"form_id": "landing-page", "form_key": "pk_landing_7d1f3c"}
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
ELSEWHERE = "http://localhost:5500"  # not one of the form's origins (8080)


def _form(email: str, **more: str) -> dict[str, str]:
    return {**LANDING, "email": email, "first_name": "Ada", "company": "AE", **more}


@contextlib.asynccontextmanager
async def _intake(
    environment: str, database_url: str, topics: CommonSettings
) -> AsyncIterator[httpx.AsyncClient]:
    common = topics.model_copy(update={"environment": environment})
    async with running_intake(intake_settings(database_url, common), worker=False) as client:
        yield client


async def test_in_development_a_page_on_any_local_port_may_post_and_come_back(
    database_url: str, topics: CommonSettings
) -> None:
    async with _intake("development", database_url, topics) as intake:
        preflight = {"origin": ELSEWHERE, "access-control-request-method": "POST"}

        allowed = await intake.options("/v1/leads", headers=preflight)
        posted = await intake.post(
            "/v1/leads",
            data=_form("ada@example.com", thank_you_url=f"{ELSEWHERE}/thanks.html"),
            headers={"origin": ELSEWHERE, **BROWSER},
        )

        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == ELSEWHERE
        assert posted.status_code == 303
        assert posted.headers["location"] == f"{ELSEWHERE}/thanks.html"


async def test_in_development_other_machines_stay_refused(
    database_url: str, topics: CommonSettings
) -> None:
    async with _intake("development", database_url, topics) as intake:
        for origin in ("https://evil.example", "http://localhost.evil.example:8080"):
            answer = await intake.post(
                "/v1/leads", data=_form("eve@example.com"), headers={"origin": origin}
            )
            redirect = await intake.post(
                "/v1/leads", data=_form("eve@example.com", thank_you_url=f"{origin}/thanks.html")
            )

            assert answer.status_code == 403, origin
            assert redirect.status_code == 422, origin


async def test_outside_development_origins_stay_exact(
    database_url: str, topics: CommonSettings
) -> None:
    async with _intake("test", database_url, topics) as intake:
        answer = await intake.post(
            "/v1/leads", data=_form("ada@example.com"), headers={"origin": ELSEWHERE}
        )

        assert answer.status_code == 403
        assert answer.json()["type"] == "/problems/origin-not-allowed"


async def test_a_refused_browser_post_is_a_readable_page_and_an_api_client_gets_json(
    database_url: str, topics: CommonSettings
) -> None:
    async with _intake("test", database_url, topics) as intake:
        form = _form("not-an-email <script>")

        page = await intake.post(
            "/v1/leads", data=_form("ada@example.com"), headers={"origin": ELSEWHERE, **BROWSER}
        )
        invalid = await intake.post("/v1/leads", data=form, headers=BROWSER)
        api = await intake.post("/v1/leads", data=form)

        assert page.status_code == 403
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<h1>This form does not accept posts from this origin</h1>" in page.text
        assert invalid.status_code == 422
        assert "<strong>email</strong>" in invalid.text
        assert "<script>" not in invalid.text
        assert "Back button" in invalid.text
        assert api.status_code == 422
        assert api.headers["content-type"] == "application/problem+json"
        assert api.json()["errors"][0]["field"] == "email"
