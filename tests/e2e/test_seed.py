"""`funnel seed` against a running `funnel dev`: the funnel it plans, SLA breaches
included, shows up in metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from funnel_tools.devplatform import free_ports, start_dev
from funnel_tools.embedded import wait_until
from funnel_tools.seed import make_plan

pytestmark = pytest.mark.e2e


def test_seed_drives_a_funnel_that_metrics_shows(tmp_path: Path) -> None:
    # The web's rate limit, as under `make run`: the seed's signed posts are not held to it.
    web_limit = {"FUNNEL_INTAKE_RATE_LIMIT_PER_CLIENT": "20"}
    platform = start_dev(tmp_path / "funnel", free_ports(), tmp_path / "dev.out", web_limit)
    try:
        env = {
            **os.environ,
            "FUNNEL_HANDOFF_DATABASE_URL": platform.database_url,
            "FUNNEL_INTAKE_URL": platform.url("intake", ""),
            "FUNNEL_SEED_HANDOFF_URL": platform.url("handoff", ""),
            "FUNNEL_SEED_METRICS_URL": platform.url("metrics", ""),
        }
        funnel = str(Path(sys.executable).with_name("funnel"))
        args = [funnel, "seed", "--seed", "7", "--leads", "30", "--breach-share", "0.3"]
        done = subprocess.run(
            [*args, "--run", "t1"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        plan = make_plan(7, 30, "t1", datetime.now(UTC), unanswered_share=0.3)
        assert plan.breaches > 0
        accepts = sum(decision.accept for decision in plan.decisions.values())
        won_cents = sum(
            w.payload["amount_cents"] for w in plan.deals if w.payload["event"] == "won"
        )

        def funnel_now() -> dict[str, Any]:
            answer = httpx.get(platform.url("metrics", "/v1/funnel"), timeout=5)
            answer.raise_for_status()
            document: dict[str, Any] = answer.json()
            return document

        def escalated() -> float:
            """Handoffs that breached their way up to a manager, from handoff's gauge."""
            text = httpx.get(platform.url("handoff", "/metrics"), timeout=5).text
            return sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith("funnel_handoff_open{") and 'status="escalated"' in line
            )

        def breaches() -> float:
            """SLA breaches metrics counted, all time (summed over the policies)."""
            text = httpx.get(platform.url("metrics", "/metrics"), timeout=5).text
            return sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith("funnel_handoff_sla_breaches_total")
            )

        # The seed waits for metrics to count its breaches before it exits.
        assert breaches() == plan.breaches, done.stderr
        assert escalated() == len(plan.unanswered)

        def complete() -> bool:
            document = funnel_now()
            total = document["stages"]["all_time"]["total"]
            return bool(
                total["captured"] == plan.unique_leads
                and total["qualified"] == plan.expected("qualified")
                and total["accepted"] == accepts
                and total["rejected"] == len(plan.decisions) - accepts
                and document["revenue"]["won_value_cents"] == won_cents
                and document["revenue"]["target_cents"] == plan.target_cents
            )

        try:
            wait_until(complete, timeout=30, what="the seeded funnel in metrics")
        except TimeoutError:
            expected = (plan.unique_leads, plan.expected("qualified"), accepts, won_cents)
            pytest.fail(f"expected {expected}, got {funnel_now()}\n{done.stderr}")
        document = funnel_now()
        total = document["stages"]["all_time"]["total"]
        assert total["disqualified"] == plan.expected("disqualified")
        assert total["captured"] > 0
        assert total["qualified"] > 0
        assert total["accepted"] > 0
        assert document["revenue"]["won_value_cents"] > 0
        assert len(document["stages"]["all_time"]["by_source"]) > 1

        # A second run adds more (a new run tag), and the existing roster is no problem.
        again = subprocess.run(
            [*args, "--run", "t2"], env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert breaches() == 2 * plan.breaches
        wait_until(
            lambda: (
                funnel_now()["stages"]["all_time"]["total"]["captured"] == 2 * plan.unique_leads
            ),
            timeout=30,
            what="the second run's leads",
        )
    finally:
        platform.stop()
