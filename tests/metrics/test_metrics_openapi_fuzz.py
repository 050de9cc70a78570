"""schemathesis over metrics' OpenAPI: whatever a client sends, never a 5xx.

The app runs under uvicorn (a real socket) on a fresh database; every operation is
fuzzed with valid and invalid input as an admin, who reaches the deepest code (a
target is recorded and evented). lead-intake's and handoff's documents are fuzzed in
tests/contract and tests/integration/handoff.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import GenerationMode

from funnel_common.auth import issue_token
from funnel_common.settings import CommonSettings
from metrics.app import create_app
from metrics.settings import MetricsSettings
from tests.helpers import served_in_thread

EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def served(database_url: str, settings: CommonSettings) -> Iterator[tuple[str, MetricsSettings]]:
    config = MetricsSettings(database_url=database_url, common=settings, run_workers=False)
    with served_in_thread(create_app(config), what="metrics") as url:
        yield url, config


def _fuzz(
    operation: Any, *, base_url: str, token: str, statuses: Counter[tuple[str, int]]
) -> list[str]:
    label: str = operation.label
    failures: list[str] = []
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    # Half the periods are real quarters, so the fuzzing also gets past the period check.
    @given(case=strategy, real_period=st.sampled_from([None, "2026-Q4", "1999-Q1"]))
    def check(case: Any, real_period: str | None) -> None:
        if real_period is not None and "period" in (case.path_parameters or {}):
            case.path_parameters["period"] = real_period
        answer = case.call(base_url=base_url, headers={"authorization": f"Bearer {token}"})
        statuses[(label, answer.status_code)] += 1
        if answer.status_code >= 500:
            failures.append(f"{label}: {answer.status_code} {answer.text[:300]}")

    with warnings.catch_warnings():
        # schemathesis' own strategies use `random` internally; not ours to fix.
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        check()
    return failures


def test_no_input_makes_metrics_answer_5xx(served: tuple[str, MetricsSettings]) -> None:
    base_url, config = served
    _, token = issue_token(config.common.auth_secret, subject="root", role="admin")
    schema = schemathesis.openapi.from_dict(create_app(config).openapi())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()

    for operation in operations:
        failures += _fuzz(operation, base_url=base_url, token=token, statuses=statuses)

    assert failures == []
    assert {op.label for op in operations} >= {
        "GET /v1/funnel",
        "GET /v1/plan",
        "PUT /v1/targets/{period}",
    }
    # The fuzzing reached real work, not only validation errors.
    reached = {label for (label, status) in statuses if 200 <= status < 300}
    assert {"GET /v1/funnel", "GET /v1/plan", "PUT /v1/targets/{period}"} <= reached, statuses
