"""handoff: routes qualified leads to reps under an SLA, and records their decisions."""

SERVICE = "handoff"
"""The name the service goes by: the events' source, logs, metrics."""
