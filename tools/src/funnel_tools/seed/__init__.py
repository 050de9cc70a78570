"""``funnel seed``: a realistic simulated funnel, driven through the platform's public APIs.

Two halves: ``plan.py`` is pure (what to create, from the seed), ``drive.py`` is the
thin HTTP half that carries the plan out.
"""

from funnel_tools.seed.drive import execute, run
from funnel_tools.seed.plan import (
    BREACHES_PER_UNANSWERED,
    DEMO_FORM,
    REJECTIONS,
    REPS,
    SLA_POLICIES,
    TEAMS,
    make_plan,
    quarter_of,
)

__all__ = [
    "BREACHES_PER_UNANSWERED",
    "DEMO_FORM",
    "REJECTIONS",
    "REPS",
    "SLA_POLICIES",
    "TEAMS",
    "execute",
    "make_plan",
    "quarter_of",
    "run",
]
