"""schemathesis over one running service: every operation with valid and invalid input,
never a 5xx. Shared by handoff's and metrics' fuzz tests."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 30


def fuzz_operation(
    operation: Any,
    *,
    base_url: str,
    token: str,
    real_values: tuple[str, Sequence[str]],
    statuses: Counter[tuple[str, int]],
) -> list[str]:
    """Fuzzes ``operation`` as the bearer of ``token``; the 5xx answers, described.

    ``real_values`` is (path parameter, values): half the cases get one of the values
    instead of a generated one, so the fuzzing also gets past "not found" and the like.
    """
    label: str = operation.label
    parameter, values = real_values
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
    @given(case=strategy, real_value=st.sampled_from([None, *values]))
    def check(case: Any, real_value: str | None) -> None:
        if real_value is not None and parameter in (case.path_parameters or {}):
            case.path_parameters[parameter] = real_value
        answer = case.call(base_url=base_url, headers={"authorization": f"Bearer {token}"})
        statuses[(label, answer.status_code)] += 1
        if answer.status_code >= 500:
            failures.append(f"{label}: {answer.status_code} {answer.text[:300]}")

    with warnings.catch_warnings():
        # schemathesis' own strategies use `random` internally; not ours to fix.
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        check()
    return failures
