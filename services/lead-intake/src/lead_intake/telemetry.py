"""lead-intake's own counters. Labels are bounded: registered form ids, fixed outcomes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.submissions = Counter(
            "funnel_intake_submissions_total",
            "Lead submissions taken, by registered form and outcome "
            "(captured, qualified, disqualified, merged, spam).",
            ["form", "outcome"],
            registry=registry,
        )
        self.webhooks = Counter(
            "funnel_intake_webhooks_total",
            "Signed webhooks taken, by integration and outcome (applied, duplicate).",
            ["integration", "outcome"],
            registry=registry,
        )
