"""lead-intake's own counters. Labels are bounded: registered form ids, fixed outcomes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
        self.lead_batch_size = Histogram(
            "funnel_intake_lead_batch_size",
            "Lead submissions written per transaction by the group committer.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
