"""Hostile text in metrics' only text inputs (the period and the currency): a 422."""

from __future__ import annotations

from urllib.parse import quote

from funnel_common.settings import CommonSettings
from metrics.settings import MetricsSettings
from tests.hostile import HOSTILE, is_problem, json_bytes
from tests.integration.access import issued_token
from tests.metrics.support import running_metrics


async def test_hostile_periods_and_currencies_are_a_precise_422(
    database_url: str, settings: CommonSettings
) -> None:
    config = MetricsSettings(database_url=database_url, common=settings)
    unexpected: list[tuple[str, str, int]] = []

    async with running_metrics(config) as client:
        token = await issued_token(database_url, "metrics", settings.auth_secret, role="admin")
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        for name, value in HOSTILE.items():
            period = quote(value.encode("utf-8", "surrogatepass"), safe="")
            answers = [
                await client.get(f"/v1/funnel?period={period}"),
                await client.get(f"/v1/plan?period={period}"),
                await client.put(
                    f"/v1/targets/{period}",
                    content=json_bytes({"amount_cents": 1}),
                    headers=headers,
                ),
                await client.put(
                    "/v1/targets/2026-Q4",
                    content=json_bytes({"amount_cents": 1, "currency": value}),
                    headers=headers,
                ),
            ]
            unexpected += [
                (name, str(answer.url)[:60], answer.status_code)
                for answer in answers
                if answer.status_code not in (404, 422) or not is_problem(answer)
            ]

    assert unexpected == []
