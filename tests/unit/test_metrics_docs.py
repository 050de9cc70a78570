"""docs/metrics.md's worked plan example is what the service computes from its story."""

from __future__ import annotations

import json
import re

from metrics import figures
from metrics.settings import REPO_CONFIG

METRICS_DOC = REPO_CONFIG.parent / "docs" / "metrics.md"


def documented_plan() -> dict[str, object]:
    text = METRICS_DOC.read_text()
    match = re.search(
        r"\$ curl -s 'localhost:8003/v1/plan\?period=2026-Q4'\n(\{.*?\n\})", text, re.S
    )
    assert match is not None, "the plan example is gone from docs/metrics.md"
    answer: dict[str, object] = json.loads(match.group(1))
    return answer


def test_the_documented_plan_example_is_what_the_plan_computes() -> None:
    # "400 leads so far, 10 deals won for $500,000 and $750,000 lost; the Q4 target is
    # $300,000, $120,000 is won and $300,000 is open for Q4."
    history = figures.StageCounts(
        captured=400, won=10, won_value_cents=500_000_00, lost_value_cents=750_000_00
    )

    plan = figures.plan(
        target_cents=300_000_00,
        won_in_period_cents=120_000_00,
        open_pipeline_cents=300_000_00,
        history=history,
    )

    assert {"period": "2026-Q4", "currency": "USD", **plan.as_json()} == documented_plan()
