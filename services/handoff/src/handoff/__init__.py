"""handoff: routes qualified leads to reps under an SLA, and records their decisions."""
