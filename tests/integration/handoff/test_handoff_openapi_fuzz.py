"""schemathesis over handoff's OpenAPI: whatever a client sends, never a 5xx, and every
answer is what the document says (schemathesis' ``--checks all``).

The app runs under uvicorn (a real socket) on a fresh database with a roster and
handoffs to act on; every operation is fuzzed with valid and invalid input as an
admin (who reaches the deepest code), and half the handoff ids are real ones.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from uuid import UUID

import pytest
import schemathesis

from funnel_common.settings import CommonSettings
from handoff.web import create_app
from tests.helpers import served_in_thread
from tests.integration.handoff.support import (
    handoff_settings,
    lead_event,
    running_handoffs,
)
from tests.openapi_fuzz import all_checks, conformance_seeds, fuzz_operation


@pytest.fixture
def served(database_url: str, settings: CommonSettings) -> Iterator[tuple[str, str, list[UUID]]]:
    """The app on a free port; (base url, admin token, seeded handoff ids)."""
    config = handoff_settings(database_url, settings)

    async def seed() -> tuple[str, list[UUID]]:
        async with running_handoffs(config) as handoffs:
            await handoffs.setup_team("emea", {"ada": {"capacity": 1000}, "bob": {}})
            ids = [await handoffs.qualify_directly(lead_event()) for _ in range(30)]
            return await handoffs.token("admin", "root"), ids

    token, ids = asyncio.run(seed())
    with served_in_thread(create_app(config), what="handoff") as url:
        yield url, token, ids


def test_no_input_makes_handoff_answer_5xx(served: tuple[str, str, list[UUID]]) -> None:
    base_url, token, seeded = served
    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()

    for operation in operations:
        failures += fuzz_operation(
            operation,
            base_url=base_url,
            token=token,
            real_values=("handoff_id", [str(handoff_id) for handoff_id in seeded]),
            statuses=statuses,
        )

    assert failures == []
    # The fuzzing reached real work, not only validation errors.
    reached = {label for (label, status) in statuses if 200 <= status < 300}
    assert {
        "PUT /v1/reps/{rep_id}",
        "PUT /v1/teams/{team_id}",
        "POST /v1/handoffs/{handoff_id}/accept",
        "GET /v1/handoffs",
    } <= reached, statuses


# Seeds the first test does not use (it draws a new one each run): a fixed, repeatable
# second look, with every check schemathesis has but one. positive_data_acceptance wants
# a 2xx for all schema-valid input, and a few rules are beyond JSON Schema: a span's
# start before its end, an email domain that can receive mail, a rep that exists, a
# window that fits its calendar. Those answer a documented 422 problem naming the field.
# FUNNEL_FUZZ_SEED=<n> runs another one.
CONFORMANCE_SEEDS = conformance_seeds(20_261_205)  # 7_919 passed too, run by hand
BEYOND_JSON_SCHEMA = ("positive_data_acceptance",)


@pytest.mark.parametrize("seed", CONFORMANCE_SEEDS)
def test_every_answer_of_handoff_is_what_its_document_says(
    served: tuple[str, str, list[UUID]], seed: int
) -> None:
    base_url, token, seeded = served
    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()

    for operation in operations:
        failures += fuzz_operation(
            operation,
            base_url=base_url,
            token=token,
            real_values=("handoff_id", [str(handoff_id) for handoff_id in seeded]),
            statuses=statuses,
            checks=all_checks(leaving_out=BEYOND_JSON_SCHEMA),
            seed=seed,
        )

    found = sorted(set(failures))
    assert not found, "\n".join(found)
