"""schemathesis over one running service: every operation with valid and invalid input,
never a 5xx. Shared by handoff's and metrics' fuzz tests."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation

EXAMPLES_PER_OPERATION = 30


def conformance_seeds(*fixed: int) -> tuple[int, ...]:
    """The seeds of a conformance run: ``FUNNEL_FUZZ_SEED`` when set (to look with seeds
    CI does not use, as lead-intake's contract test does), else ``fixed``."""
    chosen = os.environ.get("FUNNEL_FUZZ_SEED")
    return (int(chosen),) if chosen else fixed


def all_checks(*, leaving_out: Sequence[str] = ()) -> list[Any]:
    """schemathesis' whole set of checks (its ``--checks all``), less ``leaving_out``."""
    load_all_checks()
    return [check for check in CHECKS.get_all() if check.__name__ not in leaving_out]


def fuzz_operation(
    operation: Any,
    *,
    base_url: str,
    token: str,
    real_values: tuple[str, Sequence[str]],
    statuses: Counter[tuple[str, int]],
    checks: Sequence[Any] = (),
    seed: int | None = None,
) -> list[str]:
    """Fuzzes ``operation`` as the bearer of ``token``; the failures, described: 5xx
    answers, and with ``checks`` whatever those checks find (an undocumented status, an
    answer that does not match its schema, a wrong content type ...).

    ``real_values`` is (path parameter, values): half the cases get one of the values
    instead of a generated one, so the fuzzing also gets past "not found" and the like.
    ``seed`` makes a run repeatable (hypothesis' seed).
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
        headers = {"authorization": f"Bearer {token}"}
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            # The case is about its headers (e.g. no Authorization): sent as generated.
            headers = {}
        answer = case.call(base_url=base_url, headers=headers)
        statuses[(label, answer.status_code)] += 1
        if answer.status_code >= 500:
            failures.append(f"{label}: {answer.status_code} {answer.text[:300]}")
        if checks:
            try:
                case.validate_response(answer, checks=list(checks), headers=headers)
            except FailureGroup as found:
                failures.extend(
                    f"{label}: {failure.title}: {answer.status_code} {answer.text[:200]}"
                    f" | {failure.message[:300]}"
                    for failure in found.exceptions
                )

    if seed is not None:
        check = hypothesis_seed(seed)(check)
    with warnings.catch_warnings():
        # schemathesis' own strategies use `random` internally; not ours to fix.
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        check()
    return failures
