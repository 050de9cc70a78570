"""Who gets the lead: pure decisions over values, no I/O.

A team is chosen by rules on the lead (segment from company size, country); inside the
team a rep by smooth weighted round robin (nginx's algorithm) over the reps that are
eligible right now: active, under capacity, inside their working hours, covering the
lead's segment, and not excluded (e.g. the reps an SLA breach already took it from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from handoff.sla import BusinessCalendar, is_working

Segment = Literal["smb", "mid_market", "enterprise", "unknown"]
SEGMENTS: tuple[Segment, ...] = ("smb", "mid_market", "enterprise", "unknown")
SMB_BELOW = 50
ENTERPRISE_FROM = 1000

UNROUTED_TEAM = "unrouted"
"""The queue of handoffs no team's rules match; admins see it and new teams drain it."""


def segment_of(company_size: int | None) -> Segment:
    """The sales segment of a company by its number of employees."""
    if company_size is None:
        return "unknown"
    if company_size < SMB_BELOW:
        return "smb"
    if company_size < ENTERPRISE_FROM:
        return "mid_market"
    return "enterprise"


@dataclass(frozen=True)
class TeamRule:
    """A team's routing rule; empty lists match anything."""

    team_id: str
    priority: int
    segments: frozenset[str]
    countries: frozenset[str]

    def matches(self, segment: Segment, country: str | None) -> bool:
        segment_ok = not self.segments or segment in self.segments
        country_ok = not self.countries or (country is not None and country in self.countries)
        return segment_ok and country_ok

    @property
    def specificity(self) -> int:
        return int(bool(self.segments)) + int(bool(self.countries))


def choose_team(
    teams: Sequence[TeamRule],
    *,
    segment: Segment,
    country: str | None,
    exclude: frozenset[str] = frozenset(),
) -> str | None:
    """The matching team with the lowest priority number; the more specific rule wins ties."""
    candidates = [
        team for team in teams if team.team_id not in exclude and team.matches(segment, country)
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda team: (team.priority, -team.specificity, team.team_id))
    return best.team_id


@dataclass(frozen=True)
class RepState:
    """A rep as routing sees them at one moment."""

    rep_id: str
    weight: int
    capacity: int
    open_handoffs: int
    active: bool
    segments: frozenset[str]
    hours: BusinessCalendar | None
    current_weight: int = 0

    def eligible(self, *, segment: Segment, now: datetime, exclude: frozenset[str]) -> bool:
        return (
            self.active
            and self.rep_id not in exclude
            and self.open_handoffs < self.capacity
            and (not self.segments or segment in self.segments)
            and (self.hours is None or is_working(self.hours, now))
        )


@dataclass(frozen=True)
class RepChoice:
    rep_id: str
    current_weights: Mapping[str, int]
    """The round-robin state to store for every eligible rep."""


def choose_rep(
    reps: Sequence[RepState],
    *,
    segment: Segment,
    now: datetime,
    exclude: frozenset[str] = frozenset(),
) -> RepChoice | None:
    """Smooth weighted round robin over the eligible reps; None when nobody is eligible."""
    eligible = sorted(
        (rep for rep in reps if rep.eligible(segment=segment, now=now, exclude=exclude)),
        key=lambda rep: rep.rep_id,
    )
    if not eligible:
        return None
    current = {rep.rep_id: rep.current_weight + rep.weight for rep in eligible}
    total = sum(rep.weight for rep in eligible)
    chosen = max(eligible, key=lambda rep: (current[rep.rep_id], -eligible.index(rep))).rep_id
    current[chosen] -= total
    return RepChoice(rep_id=chosen, current_weights=current)
