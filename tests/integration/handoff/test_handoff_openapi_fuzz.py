"""schemathesis over handoff's OpenAPI: whatever a client sends, never a 5xx.

The app runs under uvicorn (a real socket) on a fresh database with a roster and
handoffs to act on; every operation is fuzzed with valid and invalid input as an
admin (who reaches the deepest code), and half the handoff ids are real ones.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import GenerationMode

from funnel_common.settings import CommonSettings
from handoff.app import create_app
from tests.helpers import served_in_thread
from tests.integration.handoff.support import (
    handoff_settings,
    lead_event,
    running_handoffs,
)

EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def served(database_url: str, settings: CommonSettings) -> Iterator[tuple[str, str, list[UUID]]]:
    """The app on a free port; (base url, admin token, seeded handoff ids)."""
    config = handoff_settings(database_url, settings, run_workers=False)

    async def seed() -> tuple[str, list[UUID]]:
        async with running_handoffs(config) as handoffs:
            await handoffs.setup_team("emea", {"ada": {"capacity": 1000}, "bob": {}})
            ids = [await handoffs.qualify_directly(lead_event()) for _ in range(30)]
            return await handoffs.token("admin", "root"), ids

    token, ids = asyncio.run(seed())
    with served_in_thread(create_app(config), what="handoff") as url:
        yield url, token, ids


def _fuzz(
    operation: Any,
    *,
    base_url: str,
    token: str,
    seeded: list[UUID],
    statuses: Counter[tuple[str, int]],
    failures: list[str],
) -> None:
    label: str = operation.label
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, real_id=st.sampled_from([None, *seeded]))
    def check(case: Any, real_id: UUID | None) -> None:
        if real_id is not None and "handoff_id" in (case.path_parameters or {}):
            case.path_parameters["handoff_id"] = str(real_id)
        answer = case.call(base_url=base_url, headers={"authorization": f"Bearer {token}"})
        statuses[(label, answer.status_code)] += 1
        if answer.status_code >= 500:
            failures.append(f"{label}: {answer.status_code} {answer.text[:300]}")

    with warnings.catch_warnings():
        # schemathesis' own strategies use `random` internally; not ours to fix.
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        check()


def test_no_input_makes_handoff_answer_5xx(served: tuple[str, str, list[UUID]]) -> None:
    base_url, token, seeded = served
    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()

    for operation in operations:
        _fuzz(
            operation,
            base_url=base_url,
            token=token,
            seeded=seeded,
            statuses=statuses,
            failures=failures,
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
