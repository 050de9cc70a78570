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
        self.connector_received = Counter(
            "funnel_intake_connector_received_total",
            "Deliveries received by a connector (HubSpot, Salesforce, Stripe).",
            ["connector"],
            registry=registry,
        )
        self.connector_events = Counter(
            "funnel_intake_connector_events_total",
            "Vendor events taken by a connector, by outcome (applied, duplicate, ignored) "
            "and, for ignored ones, the connector's reason.",
            ["connector", "outcome", "reason"],
            registry=registry,
        )
        self.connector_refused = Counter(
            "funnel_intake_connector_refused_total",
            "Deliveries and events a connector refused, by reason (signature_mismatch, "
            "timestamp_stale, replayed, currency_mismatch, ...).",
            ["connector", "reason"],
            registry=registry,
        )
        self.lead_batch_size = Histogram(
            "funnel_intake_lead_batch_size",
            "Lead submissions written per transaction by the group committer.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
